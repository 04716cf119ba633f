package config

import (
	"encoding"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// checkYAML walks a parsed YAML document against the type it will be
// decoded into and returns every problem in the configuration's own words
// (`nats.reconnect_wait: want a duration like "2s", got 30 (line 4)`)
// rather than in Go's (`cannot unmarshal !!int into time.Duration`):
// unknown keys, keys given twice, and values of the wrong kind.
func checkYAML(doc *yaml.Node, t reflect.Type) []string {
	var p []string
	w := walker{add: func(n *yaml.Node, path, format string, a ...any) {
		if path == "" {
			path = "(top level)"
		}
		p = append(p, fmt.Sprintf("%s: %s (line %d)", path, fmt.Sprintf(format, a...), n.Line))
	}}
	if doc.Kind == yaml.DocumentNode {
		for _, c := range doc.Content {
			w.walk(c, t, "")
		}
	} else {
		w.walk(doc, t, "")
	}
	return p
}

type walker struct {
	add func(n *yaml.Node, path, format string, a ...any)
}

var (
	durationType    = reflect.TypeFor[time.Duration]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	textType        = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// got describes a node as the user wrote it.
func got(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	if n.Tag == "!!str" && n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) == 0 && n.Value == "" {
		return `""`
	}
	if n.Tag == "!!str" {
		return strconv.Quote(n.Value)
	}
	return n.Value
}

func (w walker) walk(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // keeps the default
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	// Types that decode themselves say what is wrong in their own words.
	if reflect.PointerTo(t).Implements(unmarshalerType) || (reflect.PointerTo(t).Implements(textType) && t.Kind() != reflect.String) {
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			w.add(n, path, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		}
		return
	}
	if t == durationType {
		if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
			w.add(n, path, `want a duration like "2s", got %s`, got(n))
			return
		}
		if _, err := time.ParseDuration(n.Value); err != nil {
			w.add(n, path, `want a duration like "2s" or "24h", got %s`, got(n))
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.add(n, path, "want a mapping of keys, got %s", got(n))
			return
		}
		fields := yamlFields(t)
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := join(path, k.Value)
			if line, dup := seen[k.Value]; dup {
				w.add(k, key, "given twice (first at line %d)", line)
				continue
			}
			seen[k.Value] = k.Line
			f, ok := fields[k.Value]
			if !ok {
				w.add(k, key, "unknown key%s", suggest(k.Value, fields))
				continue
			}
			w.walk(v, f.Type, key)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.add(n, path, "want a mapping of names, got %s", got(n))
			return
		}
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := join(path, k.Value)
			if line, dup := seen[k.Value]; dup {
				w.add(k, key, "given twice (first at line %d)", line)
				continue
			}
			seen[k.Value] = k.Line
			w.walk(v, t.Elem(), key)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			w.add(n, path, "want a list, got %s", got(n))
			return
		}
		for i, c := range n.Content {
			w.walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			w.add(n, path, "want a string, got %s", got(n))
		}
	case reflect.Bool:
		// yaml.v3 also takes YAML 1.1's yes/no/on/off into a bool.
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!bool" && !yaml11Bool(n.Value)) {
			w.add(n, path, "want true or false, got %s", got(n))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || err != nil || v < minInt(t) || v > maxInt(t) {
			w.add(n, path, "want a whole number, got %s", got(n))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		_, err := strconv.ParseUint(strings.ReplaceAll(n.Value, "_", ""), 0, t.Bits())
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || err != nil {
			w.add(n, path, "want a whole number >= 0, got %s", got(n))
		}
	case reflect.Float32, reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!float" && n.Tag != "!!int") {
			w.add(n, path, "want a number, got %s", got(n))
		}
	}
}

func minInt(t reflect.Type) int64 {
	if t.Bits() == 64 {
		return math.MinInt64
	}
	return -1 << (t.Bits() - 1)
}

func maxInt(t reflect.Type) int64 {
	if t.Bits() == 64 {
		return math.MaxInt64
	}
	return 1<<(t.Bits()-1) - 1
}

// yamlFields maps a struct's YAML keys to its fields (inline structs
// included).
func yamlFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			for k, v := range yamlFields(ft) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f
	}
	return out
}

// suggest names a known key close to an unknown one.
func suggest(key string, fields map[string]reflect.StructField) string {
	best, bestD := "", 3
	for k := range fields {
		if d := distance(key, k); d < bestD || (d == bestD && best != "" && k < best) {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// distance is the Levenshtein distance of two short strings.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

func yaml11Bool(s string) bool {
	switch strings.ToLower(s) {
	case "y", "yes", "n", "no", "on", "off":
		return true
	}
	return false
}
