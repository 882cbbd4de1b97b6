package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/urfave/cli/v2"
	yaml "go.yaml.in/yaml/v3"
)

// applyConfigFile sets every flag named in the YAML file that was not
// already given on the command line or in the environment, so the order of
// precedence is: flag, K1S_* variable, config file, default.
func applyConfigFile(c *cli.Context, path string, explicit bool) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return nil
	}
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	entries, err := parseConfig(data)
	if err != nil {
		return fmt.Errorf("config file %s: %v (fix the file or point --config elsewhere)", path, err)
	}
	known := map[string]bool{}
	for _, f := range c.Command.Flags {
		for _, n := range f.Names() {
			known[n] = f.Names()[0] != "config" // a config file cannot name another
		}
	}
	for _, e := range entries {
		if !known[e.key] {
			return fmt.Errorf("config file %s, line %d: unknown key %q (keys are flag names without the leading --, e.g. data-dir)", path, e.line, e.key)
		}
	}
	for _, e := range entries {
		if c.IsSet(e.key) {
			continue
		}
		for _, v := range e.values {
			if err := c.Set(e.key, v); err != nil {
				return fmt.Errorf("config file %s, line %d: invalid value %q for %s: %v", path, e.line, v, e.key, err)
			}
		}
	}
	return nil
}

type configEntry struct {
	key    string
	line   int
	values []string
}

// parseConfig reads a flat YAML mapping. Scalars keep their literal text,
// so `write-kubeconfig-mode: 0644` stays 0644 instead of becoming 420.
func parseConfig(data []byte) ([]configEntry, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil, nil // empty file
	} else if err != nil {
		return nil, fmt.Errorf("not valid YAML: %v", err)
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("holds more than one YAML document; merge them into one mapping")
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: want a mapping of flag names to values", root.Line)
	}
	var out []configEntry
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if seen[k.Value] {
			return nil, fmt.Errorf("line %d: key %q given twice", k.Line, k.Value)
		}
		seen[k.Value] = true
		e := configEntry{key: k.Value, line: k.Line}
		switch v.Kind {
		case yaml.ScalarNode:
			if v.Tag == "!!null" {
				return nil, fmt.Errorf("line %d: key %q has no value", k.Line, k.Value)
			}
			e.values = []string{v.Value}
		case yaml.SequenceNode:
			for _, item := range v.Content {
				if item.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("line %d: list %q may only hold plain values", item.Line, k.Value)
				}
				e.values = append(e.values, item.Value)
			}
		default:
			return nil, fmt.Errorf("line %d: key %q must be a value or a list of values", v.Line, k.Value)
		}
		out = append(out, e)
	}
	return out, nil
}
