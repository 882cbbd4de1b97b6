package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"k8s.io/client-go/rest"

	"github.com/k1s-io/k1s/internal/join"
	"github.com/k1s-io/k1s/internal/pki"
)

// reachErr turns a failure to connect into advice; API errors pass.
func reachErr(rc *rest.Config, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("cannot reach the k1s server at %s: %v (is it running? for another server, pass its --data-dir or --kubeconfig)", rc.Host, ue.Err)
	}
	return err
}

// caHash is the hash agents pin: of /cacerts as the server serves it,
// fetched over the kubeconfig's trusted connection.
func caHash(ctx context.Context, rc *rest.Config) (string, error) {
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(rc.Host, "/")+join.CACertsPath, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", reachErr(rc, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("fetching the CA from %s%s: %s (is this a k1s server?)", rc.Host, join.CACertsPath, resp.Status)
	}
	return pki.CAHash(data), nil
}

func tokenCommand() *cli.Command {
	return &cli.Command{
		Name:  "token",
		Usage: "manage join tokens: bootstrap tokens for agents (create, list, delete) and the server token (rotate)",
		Subcommands: []*cli.Command{
			tokenCreateCommand(), tokenListCommand(), tokenDeleteCommand(), tokenRotateCommand(),
		},
	}
}

// noArgs refuses positional arguments of a flags-only subcommand.
func noArgs(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: k1s token %s takes only flags (run 'k1s token %s --help')", c.Args().First(), c.Command.Name, c.Command.Name)
	}
	return nil
}

func tokenCreateCommand() *cli.Command {
	var t serverTarget
	var r join.NewTokenRequest
	var usages []string
	b := &binder{}
	t.flags(b, true)
	b.duration("ttl", "how long the token is valid (0: never expires)", &r.TTL, join.DefaultTokenTTL)
	b.str("description", "what the token is for, shown by 'k1s token list'", &r.Description, "")
	b.list("usages", "usages of the token, comma-separated: "+strings.Join(join.KnownUsages, ", ")+" (default "+join.JoinUsage+", which a join needs)", &usages)
	return &cli.Command{
		Name:         "create",
		Usage:        "create a bootstrap token an agent joins with, and print it as a full K10 token",
		Flags:        b.flags,
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			b.collect(c)
			for _, u := range usages {
				for _, f := range strings.Split(u, ",") {
					if f = strings.TrimSpace(f); f != "" {
						r.Usages = append(r.Usages, f)
					}
				}
			}
			if len(usages) == 0 {
				r.Usages = []string{join.JoinUsage}
			}
			if err := r.Validate(); err != nil {
				return err
			}
			kube, rc, err := t.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
			defer cancel()
			hash, err := caHash(ctx, rc)
			if err != nil {
				return err
			}
			tok, err := join.CreateBootstrapToken(ctx, kube, r, time.Now())
			if err != nil {
				return fmt.Errorf("creating the bootstrap token: %w", reachErr(rc, err))
			}
			fmt.Fprintf(c.App.Writer, "K10%s::%s\n", hash, tok)
			id, _, _ := strings.Cut(tok, ".")
			expiry := "never expires"
			if r.TTL > 0 {
				expiry = "expires in " + r.TTL.String()
			}
			fmt.Fprintf(c.App.ErrWriter, "bootstrap token %s created (%s); join an agent with: k1s agent --server https://<server>:<port> --token <the token above>\n", id, expiry)
			return nil
		},
	}
}

func tokenListCommand() *cli.Command {
	var t serverTarget
	b := &binder{}
	t.flags(b, true)
	return &cli.Command{
		Name:         "list",
		Usage:        "list the bootstrap tokens: id, time left, expiry, usages, description",
		Flags:        b.flags,
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			kube, rc, err := t.client()
			if err != nil {
				return err
			}
			toks, err := join.ListBootstrapTokens(c.Context, kube)
			if err != nil {
				return fmt.Errorf("listing bootstrap tokens: %w", reachErr(rc, err))
			}
			writeTokenTable(c.App.Writer, toks, time.Now())
			return nil
		},
	}
}

// writeTokenTable prints toks as a table; the secrets are never shown.
func writeTokenTable(w io.Writer, toks []join.BootstrapToken, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTTL\tEXPIRES\tUSAGES\tDESCRIPTION")
	for _, t := range toks {
		ttl, exp := "<forever>", "<never>"
		if !t.Expires.IsZero() {
			exp = t.Expires.UTC().Format(time.RFC3339)
			if left := t.Expires.Sub(now); left > 0 {
				ttl = left.Round(time.Second).String()
			} else {
				ttl = "<expired>"
			}
		}
		usages := strings.Join(t.Usages, ",")
		if usages == "" {
			usages = "<none>"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.ID, ttl, exp, usages, t.Description)
	}
	_ = tw.Flush()
}

func tokenDeleteCommand() *cli.Command {
	var t serverTarget
	b := &binder{}
	t.flags(b, true)
	return &cli.Command{
		Name:         "delete",
		Usage:        "delete bootstrap tokens by id: agents can no longer join with them",
		ArgsUsage:    "<id>...",
		Flags:        b.flags,
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return errors.New("k1s token delete needs the id of a token (see 'k1s token list')")
			}
			for _, a := range c.Args().Slice() {
				if strings.HasPrefix(a, "-") {
					return fmt.Errorf("%s after an id: flags go before the ids, e.g. k1s token delete --data-dir DIR <id>", a)
				}
			}
			kube, rc, err := t.client()
			if err != nil {
				return err
			}
			for _, a := range c.Args().Slice() {
				id, err := join.DeleteBootstrapToken(c.Context, kube, a)
				if err != nil {
					return reachErr(rc, err)
				}
				fmt.Fprintf(c.App.Writer, "bootstrap token %s deleted\n", id)
			}
			return nil
		},
	}
}

func tokenRotateCommand() *cli.Command {
	var t serverTarget
	var newToken, newTokenFile string
	b := &binder{}
	t.flags(b, false)
	b.str("new-token", "the new server token secret (visible to other users in /proc: prefer --new-token-file)", &newToken, "")
	b.str("new-token-file", "file holding the new server token ('-': standard input)", &newTokenFile, "")
	return &cli.Command{
		Name:         "rotate",
		Usage:        "replace the server token: new joins need the new one; running nodes keep working",
		Flags:        b.flags,
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			tok, err := readNewToken(newToken, newTokenFile, os.Stdin)
			if err != nil {
				return err
			}
			s := t.server()
			full, err := join.RotateServerToken(s.TokenPath(), filepath.Join(s.TLSDir(), "server-ca.crt"), tok)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer, full)
			fmt.Fprintf(c.App.ErrWriter, "server token in %s replaced: a running server refuses the old token from its next join on; nodes already joined keep working. If the server is started with --token, --token-file, K1S_TOKEN or a token: in its config file, change that to the new token: until then a restart keeps the new token and logs that the given one is retired.\n", s.TokenPath())
			return nil
		},
	}
}

// readNewToken takes the new token from exactly one of the flag and the
// file (its first line; "-" is stdin).
func readNewToken(flag, file string, stdin io.Reader) (string, error) {
	switch {
	case flag != "" && file != "":
		return "", errors.New("--new-token and --new-token-file both given: use one of them")
	case flag != "":
		return flag, nil
	case file == "":
		return "", errors.New("k1s token rotate needs the new token: --new-token-file FILE (or - for standard input), or --new-token")
	}
	var data []byte
	var err error
	if file == "-" {
		data, err = io.ReadAll(io.LimitReader(stdin, 64<<10))
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return "", fmt.Errorf("reading --new-token-file: %w", err)
	}
	tok := strings.TrimSpace(firstLine(string(data)))
	if tok == "" {
		return "", fmt.Errorf("--new-token-file %s is empty", file)
	}
	return tok, nil
}

// firstLine is s up to its first line break.
func firstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}
