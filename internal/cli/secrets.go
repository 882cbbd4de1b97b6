package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/k1s-io/k1s/internal/bootstrap"
	"github.com/k1s-io/k1s/internal/secretsenc"
)

func secretsEncryptCommand() *cli.Command {
	d := &serverTarget{}
	var output string
	return &cli.Command{
		Name:  "secrets-encrypt",
		Usage: "show and rotate the keys Secrets are encrypted with at rest",
		Subcommands: []*cli.Command{
			{
				Name:  "status",
				Usage: "whether encryption is on, the active key, and how every stored Secret is encrypted",
				Flags: d.cliFlags(true, &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "text or json", Value: "text", Destination: &output}),
				Action: func(c *cli.Context) error {
					if output != "text" && output != "json" {
						return fmt.Errorf("--output %q: use text or json", output)
					}
					return secretsStatus(c.Context, c.App.Writer, d, output)
				},
			},
			{
				Name:  "reencrypt",
				Usage: "re-write every Secret not stored with the active key (e.g. those written before encryption was on)",
				Flags: d.cliFlags(true),
				Action: func(c *cli.Context) error {
					cfg, ok, err := secretsenc.Load(d.server().EncryptionConfig())
					if err != nil {
						return err
					}
					if !ok || !cfg.On {
						return errors.New("secrets encryption is off: start the server with --secrets-encryption (the default) first")
					}
					r, err := d.rewriter(c.App.Writer)
					if err != nil {
						return err
					}
					n, err := r.Reencrypt(c.Context, cfg.Active())
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "re-wrote %d Secret(s); every Secret is stored with key %s\n", n, cfg.Active())
					return nil
				},
			},
			{
				Name:  "rotate-keys",
				Usage: "make a new key active, re-write every Secret with it, then drop the old keys (the server keeps running)",
				Flags: d.cliFlags(true),
				Action: func(c *cli.Context) error {
					r, err := d.rewriter(c.App.Writer)
					if err != nil {
						return err
					}
					path := d.server().EncryptionConfig()
					shared, err := d.sharesDatastore(c.Context)
					if err != nil {
						return err
					}
					var k secretsenc.Key
					var n int
					if shared {
						k, n, err = secretsenc.RotateAcross(c.Context, path, r, time.Now(), func(ctx context.Context) error {
							return d.everyServerLoaded(ctx, path)
						})
					} else {
						k, n, err = secretsenc.Rotate(c.Context, path, r, time.Now())
					}
					if err != nil {
						if k.Name != "" {
							return fmt.Errorf("%w (key %s is in place; run rotate-keys again to finish, the old keys are kept until then)", err, k.Name)
						}
						return err
					}
					fmt.Fprintf(c.App.Writer, "new key %s is active; re-wrote %d Secret(s) with it; old keys removed\n", k.Name, n)
					return nil
				},
			},
		},
	}
}

func (d *serverTarget) rewriter(w io.Writer) (secretsenc.Rewriter, error) {
	kube, _, err := d.client()
	if err != nil {
		return secretsenc.Rewriter{}, err
	}
	return secretsenc.Rewriter{Kube: kube, Dial: d.dial, Poll: time.Second,
		Log: func(f string, a ...any) { fmt.Fprintf(w, f+"\n", a...) }}, nil
}

// encryptionStatus is `secrets-encrypt status -o json`.
type encryptionStatus struct {
	Encryption string         `json:"encryption"` // on or off
	Provider   string         `json:"provider,omitempty"`
	ActiveKey  string         `json:"activeKey,omitempty"`
	Keys       []string       `json:"keys"`
	Config     string         `json:"config"`
	Secrets    int            `json:"secrets"`
	ByKey      map[string]int `json:"secretsByKey"` // "" is in the clear
	AllActive  bool           `json:"allWithActiveKey"`
}

func secretsStatus(ctx context.Context, w io.Writer, d *serverTarget, output string) error {
	path := d.server().EncryptionConfig()
	cfg, exists, err := secretsenc.Load(path)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	stored, err := secretsenc.ReadStored(ctx, d.dial)
	if err != nil {
		return err
	}
	st := encryptionStatus{Encryption: "off", Config: path, Secrets: len(stored), ByKey: stored.Count(), Keys: []string{}}
	if !exists {
		st.Config = ""
	}
	if cfg.On {
		st.Encryption, st.Provider, st.ActiveKey = "on", secretsenc.Provider, cfg.Active()
	}
	for _, k := range cfg.Keys {
		st.Keys = append(st.Keys, k.Name)
	}
	st.AllActive = st.ByKey[st.ActiveKey] == st.Secrets
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	if st.Encryption == "on" {
		fmt.Fprintf(w, "Encryption: on (%s), configuration %s\n", st.Provider, st.Config)
		fmt.Fprintf(w, "Active key: %s\n", st.ActiveKey)
	} else {
		fmt.Fprintln(w, "Encryption: off (new Secrets are stored in the clear)")
	}
	if len(st.Keys) > 0 {
		fmt.Fprintf(w, "Keys: %v\n", st.Keys)
	}
	keys := make([]string, 0, len(st.ByKey))
	for k := range st.ByKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(w, "Secrets: %d\n", st.Secrets)
	for _, k := range keys {
		name := "key " + k
		switch k {
		case "":
			name = "in the clear"
		case "?":
			name = "another provider"
		}
		fmt.Fprintf(w, "  %-40s %d\n", name, st.ByKey[k])
	}
	switch {
	case st.Encryption == "on" && st.AllActive:
		fmt.Fprintln(w, "Every Secret is stored with the active key.")
	case st.Encryption == "on":
		fmt.Fprintf(w, "%d Secret(s) are not stored with the active key: run `k1s secrets-encrypt reencrypt`.\n", st.Secrets-st.ByKey[st.ActiveKey])
	}
	return nil
}

// sharesDatastore: other servers report on the datastore what they run
// with (package bootstrap), so a key rotation must wait for them.
func (d *serverTarget) sharesDatastore(ctx context.Context) (bool, error) {
	cli, err := d.dial(ctx)
	if err != nil {
		return false, err
	}
	defer cli.Close()
	reports, err := bootstrap.ListApplied(ctx, cli)
	return len(reports) > 0, err
}

// everyServerLoaded waits until every running server's apiserver has
// loaded the encryption configuration at path as it is now.
func (d *serverTarget) everyServerLoaded(ctx context.Context, path string) error {
	want, err := bootstrap.HashFile(path)
	if err != nil {
		return err
	}
	cli, err := d.dial(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for {
		reports, err := bootstrap.ListApplied(ctx, cli)
		var lagging []string
		running := 0
		if err == nil {
			lagging, running = bootstrap.Lagging(reports, want, time.Now())
			if running > 0 && len(lagging) == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("waiting for every server to load %s: %w", path, err)
			}
			if running == 0 {
				return fmt.Errorf("no running server reported within 3m that it loaded %s: is k1s server running on %s?", path, d.DataDir)
			}
			return fmt.Errorf("servers %s did not load %s within 3m (a server that is down takes it at its next start; one that runs but lags: see its log)", strings.Join(lagging, ", "), path)
		case <-time.After(time.Second):
		}
	}
}
