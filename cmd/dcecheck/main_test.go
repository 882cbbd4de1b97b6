package main

import (
	"bytes"
	"strings"
	"testing"
)

// A -dumpdep excerpt: main reaches text/template's evalField through a
// help function; fmt's method wrapper is reached from a type.
const dump = `# example.com/prog
_ -> main
_ -> runtime.unreachableMethod
main -> main.main
main.main -> example.com/cli.Help
example.com/cli.Help -> text/template.(*Template).Execute
text/template.(*Template).Execute -> text/template.(*state).evalField <ReflectMethod>
main.main -> type:reflect.Value <UsedInIface>
type:reflect.Value <UsedInIface> -> reflect.Value.MethodByName <ReflectMethod>
main.main -> example.com/cli.Help
`

func TestReportsChainOfEachBlocker(t *testing.T) {
	g, err := read(strings.NewReader(dump), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	msg, ok := g.verdict(nil, "", 40)
	if ok {
		t.Fatalf("passed with two <ReflectMethod> functions reachable:\n%s", msg)
	}
	want := "text/template.(*state).evalField\n" +
		"    <- text/template.(*Template).Execute\n" +
		"    <- example.com/cli.Help\n" +
		"    <- main.main\n" +
		"    <- main\n"
	if !strings.Contains(msg, want) {
		t.Errorf("report lacks the chain\n%s\ngot:\n%s", want, msg)
	}
	if !strings.Contains(msg, "reflect.Value.MethodByName\n    <- type:reflect.Value\n") {
		t.Errorf("report lacks the second function, without its flags:\n%s", msg)
	}
	if strings.Index(msg, "evalField") > strings.Index(msg, "reflect.Value.MethodByName") {
		t.Errorf("not in the order the linker reached them:\n%s", msg)
	}
}

func TestAllowListIsARatchet(t *testing.T) {
	g, err := read(strings.NewReader(dump), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	both := []string{"text/template.(*state).evalField", "reflect.Value.MethodByName"}
	if msg, ok := g.verdict(both, "allow.txt", 40); !ok || !strings.Contains(msg, "still OFF") {
		t.Errorf("listed functions failed the check or were not reported (ok=%v):\n%s", ok, msg)
	}
	msg, ok := g.verdict(both[:1], "allow.txt", 40)
	if ok || !strings.Contains(msg, "not listed in allow.txt") || strings.Contains(msg, "\ntext/template.(*state).evalField\n") {
		t.Errorf("an unlisted function passed, or a listed one was reported (ok=%v):\n%s", ok, msg)
	}
	msg, ok = g.verdict(append(both, "example.com/gone.F"), "allow.txt", 40)
	if ok || !strings.Contains(msg, "remove from allow.txt") || !strings.Contains(msg, "example.com/gone.F") {
		t.Errorf("a listed function that is no longer reachable passed (ok=%v):\n%s", ok, msg)
	}
}

func TestCleanProgramPasses(t *testing.T) {
	g, err := read(strings.NewReader("_ -> main\nmain -> main.main\n"), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if msg, ok := g.verdict(nil, "", 40); !ok || !strings.Contains(msg, "prunes unused methods") {
		t.Errorf("clean program: ok=%v\n%s", ok, msg)
	}
}

func TestFailedBuildIsAnErrorAndShown(t *testing.T) {
	var other bytes.Buffer
	_, err := read(strings.NewReader("# example.com/prog\n./main.go:3:1: syntax error\n"), &other)
	if err == nil || !strings.Contains(err.Error(), "did the build fail") {
		t.Errorf("no dependency lines: err = %v", err)
	}
	if other.String() != "./main.go:3:1: syntax error\n" {
		t.Errorf("build output not passed on: %q", other.String())
	}
}

func TestParseAllow(t *testing.T) {
	got := parseAllow("# why\nA.f # kubectl\n\n  B.g  \n")
	if strings.Join(got, ",") != "A.f,B.g" {
		t.Errorf("parseAllow = %q", got)
	}
}

func TestPluginImportFails(t *testing.T) {
	list := "plugin C\n" +
		"example.com/loader plugin fmt\n" +
		"example.com/cli example.com/loader\n" +
		"example.com/prog example.com/cli fmt\n"
	msg := pluginPath(list)
	want := "plugin\n    <- example.com/loader\n    <- example.com/cli\n    <- example.com/prog\n"
	if !strings.Contains(msg, "package plugin is linked") || !strings.Contains(msg, want) {
		t.Errorf("report lacks the import chain\n%s\ngot:\n%s", want, msg)
	}
	if msg := pluginPath("fmt\nexample.com/prog fmt\n"); msg != "" {
		t.Errorf("no plugin import, but: %s", msg)
	}
}
