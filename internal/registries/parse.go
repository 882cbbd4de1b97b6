package registries

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

var (
	topKeys    = []string{"mirrors", "configs"}
	mirrorKeys = []string{"endpoint", "rewrite"}
	configKeys = []string{"auth", "tls"}
	authKeys   = []string{"username", "password", "auth", "identity_token"}
	tlsKeys    = []string{"ca_file", "cert_file", "key_file", "insecure_skip_verify"}
)

// Parse parses YAML bytes; name is used in error messages.
func Parse(name string, data []byte) (*Registries, error) {
	p := &parser{name: name}
	root, err := p.decode(data)
	if err != nil {
		return nil, err
	}
	r := &Registries{}
	if root != nil {
		err := p.mapping(root, "", topKeys, func(key string, _, v *yaml.Node) error {
			if key == "mirrors" {
				return p.mirrors(v, r)
			}
			return p.configs(v, r)
		})
		if err != nil {
			return nil, err
		}
	}
	if err := p.warnPlainHTTPAuth(r); err != nil {
		return nil, err
	}
	// Everything was checked above with line numbers; this catches what
	// only shows when mirrors and configs are put together.
	if _, err := r.hostsFiles(); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	r.Warnings = p.warnings
	return r, nil
}

type parser struct {
	name      string
	warnings  []string
	endpoints []parsedEndpoint // for checks that need configs too
}

type parsedEndpoint struct {
	where string
	line  int
	endpoint
}

func (p *parser) errorf(n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("%s line %d: %s", p.name, n.Line, fmt.Sprintf(format, args...))
}

func (p *parser) warnf(n *yaml.Node, format string, args ...any) {
	p.warnings = append(p.warnings, fmt.Sprintf("%s line %d: %s", p.name, n.Line, fmt.Sprintf(format, args...)))
}

// decode returns the document's root, or nil for an empty document.
func (p *parser) decode(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, p.yamlError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, p.errorf(&extra, `a second YAML document ("---") is not supported: keep mirrors and configs in one`)
	} else if !errors.Is(err, io.EOF) {
		return nil, p.yamlError(err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, nil
		}
		root = root.Content[0]
	}
	root = deref(root)
	if isNull(root) {
		return nil, nil
	}
	return root, nil
}

// yamlError turns "yaml: line 3: …" into "<name> line 3: …".
func (p *parser) yamlError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if strings.HasPrefix(msg, "line ") {
		return fmt.Errorf("%s %s", p.name, msg)
	}
	return fmt.Errorf("%s: %s", p.name, msg)
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a map"
	}
	switch n.ShortTag() {
	case "!!null":
		return "nothing"
	case "!!bool":
		return "true/false"
	case "!!int", "!!float":
		return "a number"
	}
	return fmt.Sprintf("the string %q", n.Value)
}

// mapping calls fn for each key of the map n in order, after checking it
// against known (nil: any key). where names n in messages ("" is the top
// level). A null value is an empty map.
func (p *parser) mapping(n *yaml.Node, where string, known []string, fn func(key string, k, v *yaml.Node) error) error {
	n = deref(n)
	if isNull(n) {
		return nil
	}
	under := "under " + where
	if where == "" {
		where, under = "the file (mirrors and configs)", "at the top level"
	}
	if n.Kind != yaml.MappingNode {
		return p.errorf(n, "%s must be a map, got %s", where, describe(n))
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			return p.errorf(k, "keys %s must be plain names, got %s", under, describe(k))
		}
		key := k.Value
		if line, dup := seen[key]; dup {
			return p.errorf(k, "%q appears twice %s (first at line %d): keep one", key, under, line)
		}
		seen[key] = k.Line
		if known != nil && !slices.Contains(known, key) {
			hint := "known keys: " + strings.Join(known, ", ")
			if s := suggest(key, known); s != "" {
				hint = fmt.Sprintf("did you mean %q?", s)
			}
			return p.errorf(k, "unknown key %q %s (%s)", key, under, hint)
		}
		if err := fn(key, k, v); err != nil {
			return err
		}
	}
	return nil
}

// str reads a scalar as written, so that a password such as 0123 stays
// text; null is "".
func (p *parser) str(n *yaml.Node, where string) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", p.errorf(n, "%s must be a string, got %s", where, describe(n))
	}
	if isNull(n) {
		return "", nil
	}
	return n.Value, nil
}

func (p *parser) boolean(n *yaml.Node, where string) (bool, error) {
	var b bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
		return false, p.errorf(n, "%s must be true or false, got %s", where, describe(n))
	}
	return b, nil
}

// file reads a path and checks now that it exists, rather than letting
// every pull from that registry fail later.
func (p *parser) file(n *yaml.Node, where string) (string, error) {
	path, err := p.str(n, where)
	if err != nil || path == "" {
		return "", err
	}
	if !filepath.IsAbs(path) {
		return "", p.errorf(n, "%s %q must be an absolute path", where, path)
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", p.errorf(n, "%s: %s does not exist: fix the path or remove the key", where, path)
	case err != nil:
		return "", p.errorf(n, "%s: %v", where, err)
	case fi.IsDir():
		return "", p.errorf(n, "%s: %s is a directory, not a file", where, path)
	}
	return path, nil
}

func (p *parser) mirrors(n *yaml.Node, r *Registries) error {
	r.Mirrors = map[string]Mirror{}
	return p.mapping(n, "mirrors", nil, func(name string, k, v *yaml.Node) error {
		where := "mirrors." + strconv.Quote(name)
		if name != "*" {
			if err := checkHost(name); err != nil {
				return p.errorf(k, "%s: %v", where, err)
			}
		}
		var m Mirror
		err := p.mapping(v, where, mirrorKeys, func(key string, k, v *yaml.Node) error {
			if key == "endpoint" {
				return p.endpointList(v, where+".endpoint", &m)
			}
			m.Rewrites = map[string]string{}
			err := p.mapping(v, where+".rewrite", nil, func(from string, _, to *yaml.Node) error {
				s, err := p.str(to, fmt.Sprintf("%s.rewrite.%q", where, from))
				m.Rewrites[from] = s
				return err
			})
			if err == nil && len(m.Rewrites) > 0 {
				p.warnf(k, "%s.rewrite is ignored: containerd's hosts.toml cannot rewrite image names, so images are pulled from the mirror under their original names", where)
			}
			return err
		})
		r.Mirrors[name] = m
		return err
	})
}

func (p *parser) endpointList(n *yaml.Node, where string, m *Mirror) error {
	if isNull(n) {
		return nil
	}
	switch n.Kind {
	case yaml.SequenceNode:
	case yaml.ScalarNode:
		return p.errorf(n, "%s must be a list of URLs, got a string: write it as [%q]", where, n.Value)
	default:
		return p.errorf(n, "%s must be a list of URLs, got %s", where, describe(n))
	}
	seen := map[string]bool{}
	for i, item := range n.Content {
		item = deref(item)
		at := fmt.Sprintf("%s[%d]", where, i)
		if item.Kind != yaml.ScalarNode || isNull(item) {
			return p.errorf(item, "%s must be a URL, got %s", at, describe(item))
		}
		ep, err := parseEndpoint(item.Value)
		if err != nil {
			return p.errorf(item, "%s: %v", at, err)
		}
		if seen[ep.url] {
			p.warnf(item, "%s %q repeats an earlier endpoint and is skipped", at, item.Value)
			continue
		}
		seen[ep.url] = true
		m.Endpoints = append(m.Endpoints, item.Value)
		p.endpoints = append(p.endpoints, parsedEndpoint{where: at, line: item.Line, endpoint: ep})
	}
	return nil
}

func (p *parser) configs(n *yaml.Node, r *Registries) error {
	r.Configs = map[string]Config{}
	type first struct {
		key  string
		line int
	}
	byHost := map[string]first{}
	return p.mapping(n, "configs", nil, func(key string, k, v *yaml.Node) error {
		where := "configs." + strconv.Quote(key)
		host, _, err := parseConfigKey(key)
		if err != nil {
			return p.errorf(k, "%s: %v", where, err)
		}
		if f, dup := byHost[host]; dup {
			return p.errorf(k, "%s names the same registry as %q at line %d: keep one", where, f.key, f.line)
		}
		byHost[host] = first{key, k.Line}
		var c Config
		err = p.mapping(v, where, configKeys, func(field string, fk, fv *yaml.Node) error {
			if field == "auth" {
				return p.auth(fk, fv, where, &c)
			}
			return p.tls(fk, fv, where, &c)
		})
		r.Configs[key] = c
		return err
	})
}

func (p *parser) auth(k, n *yaml.Node, where string, c *Config) error {
	a := &Auth{}
	err := p.mapping(n, where+".auth", authKeys, func(key string, _, v *yaml.Node) error {
		s, err := p.str(v, where+".auth."+key)
		switch key {
		case "username":
			a.Username = s
		case "password":
			a.Password = s
		case "auth":
			a.Auth = s
		case "identity_token":
			a.IdentityToken = s
		}
		return err
	})
	if err != nil {
		return err
	}
	if _, err := a.header(); err != nil {
		return p.errorf(k, "%s.%v", where, err)
	}
	if a.IdentityToken != "" {
		p.warnf(k, "%s.auth.identity_token is ignored: it is an OAuth refresh token, which containerd's hosts.toml cannot carry; use username and password (or a Kubernetes imagePullSecret)", where)
	}
	c.Auth = a
	return nil
}

func (p *parser) tls(k, n *yaml.Node, where string, c *Config) error {
	t := &TLS{}
	err := p.mapping(n, where+".tls", tlsKeys, func(key string, _, v *yaml.Node) error {
		at := where + ".tls." + key
		var err error
		switch key {
		case "ca_file":
			t.CAFile, err = p.file(v, at)
		case "cert_file":
			t.CertFile, err = p.file(v, at)
		case "key_file":
			t.KeyFile, err = p.file(v, at)
		case "insecure_skip_verify":
			t.InsecureSkipVerify, err = p.boolean(v, at)
		}
		return err
	})
	if err != nil {
		return err
	}
	if t.KeyFile != "" && t.CertFile == "" {
		return p.errorf(k, "%s.tls.key_file is set without cert_file: add the client certificate or remove key_file", where)
	}
	c.TLS = t
	return nil
}

// warnPlainHTTPAuth warns where credentials would cross the network in clear.
func (p *parser) warnPlainHTTPAuth(r *Registries) error {
	cfgs, err := normalizeConfigs(r.Configs)
	if err != nil {
		return fmt.Errorf("%s: %v", p.name, err)
	}
	for _, ep := range p.endpoints {
		if ep.scheme == "http" && cfgs[canonicalHost(ep.host)].authorization != "" {
			p.warnings = append(p.warnings, fmt.Sprintf("%s line %d: %s %q is plain HTTP, so the credentials in configs for %s are sent unencrypted; use https:// if the registry supports it",
				p.name, ep.line, ep.where, ep.url, ep.host))
		}
	}
	return nil
}

// suggest returns the known key closest to key, if it is close enough to
// be a typo.
func suggest(key string, known []string) string {
	best, bestDist := "", max(2, len(key)/3)+1
	for _, k := range known {
		if d := editDistance(strings.ToLower(key), k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
