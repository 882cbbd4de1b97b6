// Package registries owns registries.yaml (the k3s format) and its
// translation into containerd's certs.d: one <host>/hosts.toml per mirrored
// or configured registry (_default/ for the "*" mirror), which containerd
// reads at every pull. Load/Parse check the file strictly and return
// Warnings for what containerd cannot honour (rewrites, identity tokens);
// WriteHostsDir makes the directory match, touching only what it wrote.
package registries

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
)

// DefaultPath is where k1s looks for the registries file.
const DefaultPath = "/etc/k1s/registries.yaml"

// Registries is one registries.yaml.
type Registries struct {
	// Mirrors is keyed by registry host[:port], or "*" for every registry.
	Mirrors map[string]Mirror
	// Configs is keyed by registry host[:port] or URL, or "*".
	Configs map[string]Config
	// Warnings name settings that were read but have no effect in k1s,
	// each starting with the file name and line; the caller should log them.
	Warnings []string
}

// Mirror is one entry under mirrors.
type Mirror struct {
	// Endpoints are tried in order, before the registry itself.
	Endpoints []string
	// Rewrites are kept for k3s compatibility but not applied: hosts.toml
	// has no way to express them (Parse warns).
	Rewrites map[string]string
}

// Config is one entry under configs.
type Config struct {
	Auth *Auth
	TLS  *TLS
}

// Auth holds registry credentials.
type Auth struct {
	Username string
	Password string
	// Auth is base64("username:password"), as in a docker config.json.
	Auth string
	// IdentityToken is not applied (Parse warns): for registries it is an
	// OAuth refresh token, which hosts.toml cannot carry.
	IdentityToken string
}

// TLS holds client TLS settings; paths are absolute.
type TLS struct {
	CAFile             string
	CertFile           string
	KeyFile            string
	InsecureSkipVerify bool
}

// Load reads path. A missing file is not an error: it returns (nil, nil).
func Load(path string) (*Registries, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read registries file: %w", err)
	}
	return Parse(path, data)
}

// settings are what hosts.toml can say about one host.
type settings struct {
	ca, cert, key string
	skipVerify    bool
	authorization string // the whole header value
}

func (s settings) empty() bool { return s == settings{} }

// hostEntry is one [host."…"] table.
type hostEntry struct {
	url          string
	overridePath bool
	settings
}

// hostsFile is one <dir>/<name>/hosts.toml.
type hostsFile struct {
	server string // empty in _default: the pulled image's own registry
	top    settings
	hosts  []hostEntry
}

// endpoint is a mirror URL as containerd should see it.
type endpoint struct {
	scheme, host string
	url          string // the [host."…"] key
	overridePath bool
}

// parseEndpoint checks a mirror endpoint URL. Paths follow k3s, whose file
// format this is: none, "/" or "/v2" is the standard API root (containerd
// appends /v2 itself); any other path is the API root as written, so
// override_path is set. Without it containerd would append /v2 to a path
// such as Harbor's proxy-cache "/v2/dockerhub", which then fails.
func parseEndpoint(raw string) (endpoint, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return endpoint{}, fmt.Errorf("%q is not a URL: %v", raw, err)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "https" && scheme != "http" {
		return endpoint{}, fmt.Errorf("%q must start with https:// (or http:// for a registry without TLS)", raw)
	}
	if u.User != nil {
		// Not quoting raw: it holds a password.
		return endpoint{}, fmt.Errorf("endpoint for %s must not contain a user name or password: put them under configs.%q.auth", u.Host, u.Host)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return endpoint{}, fmt.Errorf("%q must not have a query or fragment", raw)
	}
	if err := checkHost(u.Host); err != nil {
		return endpoint{}, fmt.Errorf("%q: %v", raw, err)
	}
	ep := endpoint{scheme: scheme, host: u.Host, url: scheme + "://" + u.Host}
	switch p := strings.TrimRight(u.EscapedPath(), "/"); p {
	case "", "/v2":
	default:
		ep.url += p
		ep.overridePath = true
	}
	return ep, nil
}

// hostPattern is what a registry host[:port] may contain; it is also a
// directory name, so "/" and ".." must never get through.
var hostPattern = regexp.MustCompile(`^[A-Za-z0-9\[][A-Za-z0-9._:\[\]-]*$`)

func checkHost(h string) error {
	switch {
	case h == "":
		return errors.New("the registry host is empty")
	case h == "_default":
		return errors.New(`"_default" is not a registry host: use "*" for the mirror of every registry`)
	case strings.Contains(h, ".."), !hostPattern.MatchString(h):
		return fmt.Errorf("%q is not a registry host[:port] (letters, digits, \".\", \"-\", \":\", and [] around an IPv6 address)", h)
	}
	return nil
}

// canonicalHost merges the two names of Docker Hub, as containerd does.
func canonicalHost(h string) string {
	if h == "registry-1.docker.io" {
		return "docker.io"
	}
	return h
}

// upstream is the server containerd falls back to for registry host.
func upstream(scheme, host string) string {
	if scheme == "" {
		scheme = "https"
	}
	if host == "docker.io" {
		host = "registry-1.docker.io"
	}
	return scheme + "://" + host
}

// parseConfigKey returns the canonical host a configs key names, and the
// scheme when the key is a URL.
func parseConfigKey(key string) (host, scheme string, err error) {
	if key == "*" {
		return "*", "", nil
	}
	host = key
	if strings.Contains(key, "://") {
		u, err := url.Parse(key)
		if err != nil {
			return "", "", fmt.Errorf("%q is not a URL: %v", key, err)
		}
		scheme = strings.ToLower(u.Scheme)
		if scheme != "https" && scheme != "http" {
			return "", "", fmt.Errorf("%q must be a host[:port] or an https:// or http:// URL", key)
		}
		if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return "", "", fmt.Errorf("%q must name a registry only: write %q", key, u.Host)
		}
		host = u.Host
	}
	if err := checkHost(host); err != nil {
		return "", "", err
	}
	return canonicalHost(host), scheme, nil
}

func (c Config) settings() (settings, error) {
	var s settings
	if t := c.TLS; t != nil {
		if t.KeyFile != "" && t.CertFile == "" {
			return s, errors.New("tls.key_file is set without tls.cert_file: add the client certificate or remove key_file")
		}
		s.ca, s.cert, s.key, s.skipVerify = t.CAFile, t.CertFile, t.KeyFile, t.InsecureSkipVerify
	}
	if a := c.Auth; a != nil {
		h, err := a.header()
		if err != nil {
			return s, err
		}
		s.authorization = h
	}
	return s, nil
}

// header is the Authorization value: containerd sends hosts.toml headers
// with every request to that host and to its token server, so Basic
// credentials work for both plain and token-based registries.
func (a Auth) header() (string, error) {
	switch {
	case a.Auth != "" && (a.Username != "" || a.Password != ""):
		return "", errors.New("auth.auth and auth.username/password are both set: keep one")
	case a.Auth != "":
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(a.Auth))
		if err != nil || !bytes.Contains(raw, []byte(":")) {
			return "", errors.New(`auth.auth must be the base64 of "username:password"`)
		}
		return "Basic " + base64.StdEncoding.EncodeToString(raw), nil
	case a.Username != "":
		if strings.Contains(a.Username, ":") {
			return "", errors.New(`auth.username must not contain ":"`)
		}
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(a.Username+":"+a.Password)), nil
	case a.Password != "":
		return "", errors.New("auth.password is set without auth.username: add the username")
	}
	return "", nil
}

type normConfig struct {
	scheme string
	settings
}

func normalizeConfigs(configs map[string]Config) (map[string]normConfig, error) {
	out := make(map[string]normConfig, len(configs))
	keyOf := map[string]string{}
	for _, key := range sortedKeys(configs) {
		host, scheme, err := parseConfigKey(key)
		if err != nil {
			return nil, fmt.Errorf("configs.%q: %v", key, err)
		}
		if prev, dup := keyOf[host]; dup {
			return nil, fmt.Errorf("configs.%q and configs.%q name the same registry: keep one", prev, key)
		}
		keyOf[host] = key
		s, err := configs[key].settings()
		if err != nil {
			return nil, fmt.Errorf("configs.%q.%v", key, err)
		}
		out[host] = normConfig{scheme: scheme, settings: s}
	}
	return out, nil
}

// hostsFiles derives the certs.d content, keyed by directory name.
// mirrors.H gives H/hosts.toml: its endpoints as [host] tables in order,
// then H itself as server, which containerd tries last. configs.K applies
// to every endpoint whose host is K, and to K's own server: top-level keys
// of K/hosts.toml, written even when K has no mirror so direct pulls get it.
func (r *Registries) hostsFiles() (map[string]*hostsFile, error) {
	files := map[string]*hostsFile{}
	if r == nil {
		return files, nil
	}
	cfgs, err := normalizeConfigs(r.Configs)
	if err != nil {
		return nil, err
	}
	for _, name := range sortedKeys(r.Mirrors) {
		dirName := name
		own := cfgs[canonicalHost(name)]
		f := &hostsFile{top: own.settings}
		if name == "*" {
			dirName = "_default"
		} else {
			if err := checkHost(name); err != nil {
				return nil, fmt.Errorf("mirrors: %v", err)
			}
			f.server = upstream(own.scheme, name)
		}
		seen := map[string]bool{}
		for _, raw := range r.Mirrors[name].Endpoints {
			ep, err := parseEndpoint(raw)
			if err != nil {
				return nil, fmt.Errorf("mirrors.%q.endpoint: %v", name, err)
			}
			if seen[ep.url] {
				continue // a repeated table would make the TOML invalid
			}
			seen[ep.url] = true
			f.hosts = append(f.hosts, hostEntry{
				url:          ep.url,
				overridePath: ep.overridePath,
				settings:     cfgs[canonicalHost(ep.host)].settings,
			})
		}
		if len(f.hosts) == 0 && f.top.empty() && (name == "*" || f.server == upstream("", name)) {
			continue // says nothing containerd does not do already
		}
		files[dirName] = f
	}
	for host, c := range cfgs {
		dirName := host
		if host == "*" {
			dirName = "_default"
		}
		if _, done := files[dirName]; done {
			continue // already the top level of that registry's mirror file
		}
		if c.settings.empty() && c.scheme != "http" {
			continue
		}
		f := &hostsFile{top: c.settings}
		if host != "*" {
			f.server = upstream(c.scheme, host)
		}
		files[dirName] = f
	}
	return files, nil
}

// render writes hosts.toml by hand: containerd tries [host] tables in file
// order, and go-toml would sort them as map keys.
func (f *hostsFile) render() []byte {
	var b strings.Builder
	b.WriteString("# Written by k1s from registries.yaml; edits are overwritten.\n")
	if f.server != "" {
		fmt.Fprintf(&b, "server = %s\n", tomlString(f.server))
	}
	f.top.render(&b, "", "header")
	for _, h := range f.hosts {
		table := "host." + tomlString(h.url)
		fmt.Fprintf(&b, "\n[%s]\n", table)
		b.WriteString(`  capabilities = ["pull", "resolve"]` + "\n")
		if h.overridePath {
			b.WriteString("  override_path = true\n")
		}
		h.settings.render(&b, "  ", table+".header")
	}
	return []byte(b.String())
}

// render writes s as keys of the current table; the header table comes
// last because it ends that table.
func (s settings) render(b *strings.Builder, indent, headerTable string) {
	if s.ca != "" {
		fmt.Fprintf(b, "%sca = %s\n", indent, tomlString(s.ca))
	}
	if s.cert != "" {
		// An empty key means the key is in the certificate file.
		fmt.Fprintf(b, "%sclient = [[%s, %s]]\n", indent, tomlString(s.cert), tomlString(s.key))
	}
	if s.skipVerify {
		fmt.Fprintf(b, "%sskip_verify = true\n", indent)
	}
	if s.authorization != "" {
		fmt.Fprintf(b, "%s[%s]\n%s  Authorization = [%s]\n", indent, headerTable, indent, tomlString(s.authorization))
	}
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s { // invalid UTF-8 becomes U+FFFD, keeping the file valid
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
