package netpol

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// hooks are the built-in chains that jump to ours, first, so no ACCEPT of
// kube-proxy or flannel comes before a policy's DROP.
var hooks = []struct{ builtin, chain string }{
	{"FORWARD", ForwardChain},
	{"INPUT", InputChain},
}

const hookComment = "k1s NetworkPolicy enforcement"

// Applier writes plans into the kernel of the current network namespace.
type Applier struct {
	ipt     *iptables.IPTables
	restore string          // iptables-restore of the same iptables
	save    string          // and its iptables-save
	nl      *netlink.Handle // ipsets
	sets    map[string]int  // k1s-np-* sets that exist, with their size
	last    string          // the last iptables-restore input applied
}

// NewApplier finds iptables and iptables-restore (the same backend
// kube-proxy uses: the first iptables on PATH).
func NewApplier() (*Applier, error) {
	ipt, err := iptables.New(iptables.Timeout(5))
	if err != nil {
		return nil, fmt.Errorf("network policies need iptables: %w", err)
	}
	path, err := exec.LookPath("iptables")
	if err != nil {
		return nil, err
	}
	restore := filepath.Join(filepath.Dir(path), "iptables-restore")
	save := filepath.Join(filepath.Dir(path), "iptables-save")
	for _, p := range []string{restore, save} {
		if _, err := exec.LookPath(p); err != nil {
			return nil, fmt.Errorf("network policies need %s next to %s: %w", filepath.Base(p), path, err)
		}
	}
	h, err := netlink.NewHandle(unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return &Applier{ipt: ipt, restore: restore, save: save, nl: h}, nil
}

// Close releases the netlink socket.
func (a *Applier) Close() { a.nl.Close() }

// Apply makes the kernel's rules and sets those of p. Sets are made
// complete before any rule uses them; the chains are replaced in one
// iptables-restore transaction, so a Pod is never without its rules
// while they change; sets no rule uses any more are removed last.
func (a *Applier) Apply(p Plan) error {
	if err := a.ensureSets(p.Sets); err != nil {
		return err
	}
	// One iptables-save gives the chains and the hooks: the resync every
	// 30 s costs one process when nothing changed.
	existing, rules, err := a.filterTable()
	if err != nil {
		return err
	}
	in := render(p, existing)
	if in != a.last || !hasAll(existing, p.Chains) {
		cmd := exec.Command(a.restore, "--noflush", "-w", "5")
		cmd.Stdin = strings.NewReader(in)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("iptables-restore: %v: %s", err, bytes.TrimSpace(out))
		}
		a.last = in
	}
	for _, h := range hooks {
		if err := a.ensureFirst(h.builtin, h.chain, rules[h.builtin]); err != nil {
			return err
		}
	}
	return a.pruneSets(p.Sets)
}

// filterTable reads the filter table: its chains, and the rules ("-A ...")
// of each.
func (a *Applier) filterTable() ([]string, map[string][]string, error) {
	out, err := exec.Command(a.save, "-t", "filter").Output()
	if err != nil {
		return nil, nil, fmt.Errorf("iptables-save: %w", err)
	}
	var chains []string
	rules := map[string][]string{}
	for _, l := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(l, ":"):
			chains = append(chains, strings.Fields(l[1:])[0])
		case strings.HasPrefix(l, "-A "):
			if f := strings.Fields(l); len(f) > 1 {
				rules[f[1]] = append(rules[f[1]], l)
			}
		}
	}
	return chains, rules, nil
}

// render writes the plan as iptables-restore input for the filter table:
// every chain of the plan is declared (which empties it) and refilled, and
// our chains the plan no longer has are emptied and deleted.
func render(p Plan, existing []string) string {
	var b strings.Builder
	b.WriteString("*filter\n")
	want := map[string]bool{}
	for _, c := range p.Chains {
		want[c.Name] = true
		fmt.Fprintf(&b, ":%s - [0:0]\n", c.Name)
	}
	var stale []string
	for _, c := range existing {
		if strings.HasPrefix(c, ChainPrefix) && !want[c] {
			stale = append(stale, c)
			fmt.Fprintf(&b, ":%s - [0:0]\n", c)
		}
	}
	sort.Strings(stale)
	for _, c := range p.Chains {
		for _, r := range c.Rules {
			b.WriteString("-A " + c.Name)
			for _, arg := range r {
				b.WriteByte(' ')
				b.WriteString(word(arg))
			}
			b.WriteByte('\n')
		}
	}
	for _, c := range stale {
		b.WriteString("-X " + c + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// hasAll reports whether every chain of the plan exists, so an unchanged
// plan need not be written again.
func hasAll(existing []string, chains []Chain) bool {
	have := map[string]bool{}
	for _, c := range existing {
		have[c] = true
	}
	for _, c := range chains {
		if !have[c.Name] {
			return false
		}
	}
	return true
}

// word quotes an argument with spaces for iptables-restore.
func word(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"'") {
		return s
	}
	return `"` + strings.NewReplacer(`"`, "'", "\\", "/").Replace(s) + `"`
}

// ensureFirst makes "-j chain" the first rule of builtin, exactly once. A
// new jump is inserted before the old one is removed, so traffic never
// passes without it.
func (a *Applier) ensureFirst(builtin, chain string, rules []string) error {
	pos := jumps(rules, chain)
	if len(pos) == 1 && pos[0] == 1 {
		return nil
	}
	if len(pos) == 0 || pos[0] != 1 {
		if err := a.ipt.Insert("filter", builtin, 1, "-m", "comment", "--comment", hookComment, "-j", chain); err != nil {
			return err
		}
		rules, err := a.listRules(builtin)
		if err != nil {
			return err
		}
		pos = jumps(rules, chain)
	}
	for i := len(pos) - 1; i >= 1; i-- {
		if err := a.ipt.DeleteById("filter", builtin, pos[i]); err != nil {
			return err
		}
	}
	return nil
}

func (a *Applier) listRules(chain string) ([]string, error) {
	all, err := a.ipt.List("filter", chain)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range all {
		if strings.HasPrefix(r, "-A ") {
			out = append(out, r)
		}
	}
	return out, nil
}

// jumps are the 1-based positions of the rules jumping to chain.
func jumps(rules []string, chain string) []int {
	var out []int
	for i, r := range rules {
		if strings.HasSuffix(r, " -j "+chain) {
			out = append(out, i+1)
		}
	}
	return out
}

// ensureSets creates the sets of the plan that do not exist yet, filled.
func (a *Applier) ensureSets(sets []Set) error {
	// Listed every time: the kernel's sets are the truth, not our memory.
	if err := a.loadSets(); err != nil {
		return err
	}
	for _, s := range sets {
		if n, ok := a.sets[s.Name]; ok && n == len(s.Members) {
			continue
		} else if ok {
			// Left half-filled by an interrupted run; no rule used it yet.
			if err := a.nl.IpsetFlush(s.Name); err != nil {
				return fmt.Errorf("ipset %s: flush: %w", s.Name, err)
			}
		} else if err := a.nl.IpsetCreate(s.Name, s.Type, netlink.IpsetCreateOptions{Family: unix.AF_INET, MaxElements: setMax(len(s.Members))}); err != nil {
			return fmt.Errorf("ipset %s (%s): create: %w", s.Name, s.Type, err)
		}
		a.sets[s.Name] = 0
		for _, m := range s.Members {
			e, err := entry(s.Type, m)
			if err != nil {
				return fmt.Errorf("ipset %s: %w", s.Name, err)
			}
			if err := a.nl.IpsetAdd(s.Name, e); err != nil {
				return fmt.Errorf("ipset %s: add %s: %w", s.Name, m, err)
			}
		}
		a.sets[s.Name] = len(s.Members)
	}
	return nil
}

// setMax leaves the kernel's default (65536) unless a set needs more.
func setMax(n int) uint32 {
	if n < 65536 {
		return 0
	}
	return uint32(n)
}

func (a *Applier) loadSets() error {
	all, err := a.nl.IpsetListAll()
	if err != nil {
		return fmt.Errorf("listing ipsets (is the kernel built with ip_set?): %w", err)
	}
	a.sets = map[string]int{}
	for _, s := range all {
		if strings.HasPrefix(s.SetName, SetPrefix) {
			a.sets[s.SetName] = len(s.Entries)
		}
	}
	return nil
}

// pruneSets destroys our sets the plan does not use.
func (a *Applier) pruneSets(sets []Set) error {
	want := map[string]bool{}
	for _, s := range sets {
		want[s.Name] = true
	}
	var errs []error
	for name := range a.sets {
		if want[name] {
			continue
		}
		if err := a.nl.IpsetDestroy(name); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("ipset %s: destroy: %w", name, err))
			continue
		}
		delete(a.sets, name)
	}
	return errors.Join(errs...)
}

// entry parses a planner member of a set of type typ.
func entry(typ, m string) (*netlink.IPSetEntry, error) {
	switch typ {
	case SetIP:
		ip := net.ParseIP(m).To4()
		if ip == nil {
			return nil, fmt.Errorf("bad member %q", m)
		}
		return &netlink.IPSetEntry{IP: ip}, nil
	case SetNet:
		_, n, err := net.ParseCIDR(m)
		if err != nil || n.IP.To4() == nil {
			return nil, fmt.Errorf("bad member %q", m)
		}
		ones, _ := n.Mask.Size()
		return &netlink.IPSetEntry{IP: n.IP.To4(), CIDR: uint8(ones)}, nil
	case SetIPPort:
		ipS, pp, ok := strings.Cut(m, ",")
		proto, portS, ok2 := strings.Cut(pp, ":")
		ip := net.ParseIP(ipS).To4()
		port, err := strconv.ParseUint(portS, 10, 16)
		var pn uint8
		switch proto {
		case "tcp":
			pn = unix.IPPROTO_TCP
		case "udp":
			pn = unix.IPPROTO_UDP
		case "sctp":
			pn = unix.IPPROTO_SCTP
		default:
			ok = false
		}
		if !ok || !ok2 || ip == nil || err != nil {
			return nil, fmt.Errorf("bad member %q", m)
		}
		p16 := uint16(port)
		return &netlink.IPSetEntry{IP: ip, Protocol: &pn, Port: &p16}, nil
	}
	return nil, fmt.Errorf("unknown set type %s", typ)
}

// Cleanup removes every K1S-NP-* chain, the jumps to them and every
// k1s-np-* set, for --disable-network-policy. It reports what it removed;
// a host without iptables has nothing to remove.
func Cleanup() (removed int, err error) {
	ipt, err := iptables.New()
	if err != nil {
		return 0, nil
	}
	var errs []error
	for _, h := range hooks {
		all, err := ipt.List("filter", h.builtin)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var rules []string
		for _, r := range all {
			if strings.HasPrefix(r, "-A ") {
				rules = append(rules, r)
			}
		}
		pos := jumps(rules, h.chain)
		for i := len(pos) - 1; i >= 0; i-- {
			if err := ipt.DeleteById("filter", h.builtin, pos[i]); err != nil {
				errs = append(errs, err)
			}
		}
	}
	chains, err := ipt.ListChains("filter")
	if err != nil {
		return 0, errors.Join(append(errs, err)...)
	}
	var ours []string
	for _, c := range chains {
		if strings.HasPrefix(c, ChainPrefix) {
			ours = append(ours, c)
			if err := ipt.ClearChain("filter", c); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, c := range ours {
		if err := ipt.DeleteChain("filter", c); err != nil {
			errs = append(errs, err)
		} else {
			removed++
		}
	}
	h, err := netlink.NewHandle(unix.NETLINK_NETFILTER)
	if err != nil {
		return removed, errors.Join(append(errs, err)...)
	}
	defer h.Close()
	sets, err := h.IpsetListAll()
	if err != nil {
		// A kernel without ip_set has no sets of ours.
		return removed, errors.Join(errs...)
	}
	for _, s := range sets {
		if strings.HasPrefix(s.SetName, SetPrefix) {
			if err := h.IpsetDestroy(s.SetName); err != nil {
				errs = append(errs, fmt.Errorf("ipset %s: %w", s.SetName, err))
			} else {
				removed++
			}
		}
	}
	return removed, errors.Join(errs...)
}
