// Command dcecheck fails when the Go linker's method pruning is off for a
// program, or is kept off by something new. It reads the output of
// `go build -ldflags=-dumpdep` (one "parent -> symbol" line per reachable
// symbol, each with the parent that first reached it) and reports every
// reachable function the compiler marked <ReflectMethod>: one that calls
// reflect's Method or MethodByName with a name it cannot see. One such
// function makes the linker keep every exported method of every reachable
// type. Each is printed with the chain of callers that reached it.
//
// With -imports FILE (`go list -deps -f '{{.ImportPath}}{{range .Imports}}
// {{.}}{{end}}'` of the program) it also fails when the program imports
// package plugin: with cgo, the linker then treats the program as
// dynamically linked Go, keeps every method, exported or not, and exports
// every symbol in the dynamic symbol table; -dumpdep does not show that.
//
// With -allow FILE (function names, one a line, # comments) the functions
// listed there are tolerated, so that a program whose pruning is still off
// cannot get new blockers; a listed function that is no longer reachable
// is an error too, so the list only shrinks. With an empty list, or none,
// any such function fails the check.
//
// Usage: go build -ldflags=-dumpdep -o /dev/null . 2>&1 | dcecheck [-allow FILE] [-imports FILE]
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

const marker = "<ReflectMethod>"

func main() {
	allowFile := flag.String("allow", "", "file of <ReflectMethod> functions still tolerated (one a line, # comments)")
	maxDepth := flag.Int("depth", 40, "longest chain to print per function")
	importsFile := flag.String("imports", "", "`go list -deps` output (import path, then its imports, per line) to check for package plugin")
	flag.Parse()
	pluginMsg := ""
	if *importsFile != "" {
		b, err := os.ReadFile(*importsFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "dcecheck:", err)
			os.Exit(2)
		}
		pluginMsg = pluginPath(string(b))
	}
	var allow []string
	if *allowFile != "" {
		b, err := os.ReadFile(*allowFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "dcecheck:", err)
			os.Exit(2)
		}
		allow = parseAllow(string(b))
	}
	g, err := read(os.Stdin, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dcecheck:", err)
		os.Exit(2)
	}
	msg, ok := g.verdict(allow, *allowFile, *maxDepth)
	if pluginMsg != "" {
		msg, ok = pluginMsg+msg, false
	}
	if !ok {
		fmt.Fprint(os.Stderr, msg)
		os.Exit(1)
	}
	fmt.Print(msg)
}

// graph is what -dumpdep says: each reachable symbol's first parent, and
// the <ReflectMethod> functions in the order the linker reached them.
type graph struct {
	parent map[string]string
	found  []string
}

// read parses -dumpdep output. Other lines (the go command's "# package"
// header, compiler or linker errors) are copied to other, so a failed
// build shows why; a stream without any dependency line is an error.
func read(r io.Reader, other io.Writer) (*graph, error) {
	g := &graph{parent: map[string]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		from, to, ok := strings.Cut(line, " -> ")
		if !ok {
			if !strings.HasPrefix(line, "# ") {
				fmt.Fprintln(other, line)
			}
			continue
		}
		from, to = clean(from), clean(to)
		if _, seen := g.parent[to]; seen {
			continue
		}
		g.parent[to] = from
		if strings.HasSuffix(line, marker) {
			g.found = append(g.found, to)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(g.parent) == 0 {
		return nil, fmt.Errorf("no dependency lines on stdin: pipe in the output of `go build -ldflags=-dumpdep` (did the build fail?)")
	}
	return g, nil
}

// verdict says whether the reachable <ReflectMethod> functions are within
// allow, with a report either way.
func (g *graph) verdict(allow []string, allowFile string, maxDepth int) (string, bool) {
	allowed := map[string]bool{}
	for _, a := range allow {
		allowed[a] = true
	}
	var unexpected, tolerated []string
	reachable := map[string]bool{}
	for _, fn := range g.found {
		reachable[fn] = true
		if allowed[fn] {
			tolerated = append(tolerated, fn)
		} else {
			unexpected = append(unexpected, fn)
		}
	}
	var stale []string
	for _, a := range allow {
		if !reachable[a] {
			stale = append(stale, a)
		}
	}
	sort.Strings(stale)
	var b strings.Builder
	if len(unexpected) > 0 {
		fmt.Fprintf(&b, "dcecheck: FAIL: %d function(s) that call reflect's Method/MethodByName with a name the compiler cannot see are reachable", len(unexpected))
		if allowFile != "" {
			fmt.Fprintf(&b, " and not listed in %s", allowFile)
		}
		fmt.Fprintf(&b, ".\nEach one makes the linker keep every exported method of every reachable type (dead-code elimination of methods is lost).\n")
		fmt.Fprintf(&b, "Make it unreachable: drop the dependency or the call, use a build tag, or look the method up by a constant name.\n")
		fmt.Fprintf(&b, "Each is shown with the first chain of callers that reached it; the first one listed is usually the cause, later ones may only be kept because pruning is already off:\n")
		for _, fn := range unexpected {
			fmt.Fprintf(&b, "\n%s\n", fn)
			for _, c := range g.chain(fn, maxDepth) {
				fmt.Fprintf(&b, "    <- %s\n", c)
			}
		}
	}
	if len(stale) > 0 {
		fmt.Fprintf(&b, "\ndcecheck: FAIL: no longer reachable, so remove from %s (the list only shrinks):\n", allowFile)
		for _, a := range stale {
			fmt.Fprintf(&b, "    %s\n", a)
		}
	}
	if b.Len() > 0 {
		return b.String(), false
	}
	if len(tolerated) > 0 {
		fmt.Fprintf(&b, "dcecheck: ok, no new blocker; method pruning is still OFF because of %d function(s) listed in %s. The first reached:\n%s\n", len(tolerated), allowFile, tolerated[0])
		for _, c := range g.chain(tolerated[0], maxDepth) {
			fmt.Fprintf(&b, "    <- %s\n", c)
		}
		return b.String(), true
	}
	return "dcecheck: ok, no <ReflectMethod> function is reachable: the linker prunes unused methods\n", true
}

// chain returns fn's callers up to a root, nearest first.
func (g *graph) chain(fn string, maxDepth int) []string {
	var out []string
	seen := map[string]bool{fn: true}
	for p := g.parent[fn]; p != "" && p != "_"; p = g.parent[p] {
		if seen[p] {
			break
		}
		seen[p] = true
		if len(out) == maxDepth {
			out = append(out, "…")
			break
		}
		out = append(out, p)
	}
	return out
}

// clean drops the linker's attribute flags (" <UsedInIface>" etc.) from a name.
func clean(s string) string {
	if i := strings.Index(s, " <"); i >= 0 {
		return s[:i]
	}
	return s
}

func parseAllow(s string) []string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out
}

// pluginPath returns a failure report if the import graph (go list -deps
// lines: a package, then what it imports) holds package plugin, with the
// shortest chain of imports from the main package (the last line) to it.
func pluginPath(list string) string {
	imports := map[string][]string{}
	var root string
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		root = f[0]
		imports[f[0]] = f[1:]
	}
	if _, ok := imports["plugin"]; !ok {
		return ""
	}
	from := map[string]string{root: ""}
	queue := []string{root}
	for len(queue) > 0 && from["plugin"] == "" {
		p := queue[0]
		queue = queue[1:]
		for _, q := range imports[p] {
			if _, seen := from[q]; !seen {
				from[q] = p
				queue = append(queue, q)
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "dcecheck: FAIL: package plugin is linked. With cgo the linker then treats the program as dynamically linked:\n")
	fmt.Fprintf(&b, "it keeps every method of every reachable type, exported or not, and writes every symbol into the dynamic symbol table.\n")
	fmt.Fprintf(&b, "Drop the import (kustomize's Go plugin loader: build tag kustomize_disable_go_plugin_support). Imported through:\n")
	fmt.Fprintf(&b, "plugin\n")
	for p := from["plugin"]; p != ""; p = from[p] {
		fmt.Fprintf(&b, "    <- %s\n", p)
	}
	return b.String() + "\n"
}
