package config

import (
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// decodeStrict decodes n into v (a pointer), walking structs and slices itself so that an unknown
// key or a wrongly typed value is reported with its full key path (outputs[1].flush_bytes) rather
// than a line number alone.
func decodeStrict(n *yaml.Node, v any, path string) error {
	return decodeValue(n, reflect.ValueOf(v).Elem(), path)
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

func decodeValue(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if reflect.PointerTo(v.Type()).Implements(unmarshalerType) {
		return wrap(path, n, n.Decode(v.Addr().Interface()))
	}
	switch v.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return errAt(path, "want a mapping (line %d)", n.Line)
		}
		fields := map[string][]int{}
		collectFields(v.Type(), nil, fields)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i].Value, n.Content[i+1]
			key := join(path, k)
			idx, ok := fields[k]
			if !ok {
				return errAt(key, "unknown key (line %d)", n.Content[i].Line)
			}
			if seen[k] {
				return errAt(key, "given twice (line %d)", n.Content[i].Line)
			}
			seen[k] = true
			if err := decodeValue(val, v.FieldByIndex(idx), key); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return nil
		}
		if n.Kind != yaml.SequenceNode {
			return errAt(path, "want a list (line %d)", n.Line)
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			if err := decodeValue(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	}
	return wrap(path, n, n.Decode(v.Addr().Interface()))
}

// collectFields maps the YAML keys of struct type t to their field index paths. The keys of a
// struct field tagged `yaml:",inline"` are collected as if they were t's own, so a section can
// keep the settings of one kind (e.g. config.WebhookInput) in a struct of its own.
func collectFields(t reflect.Type, prefix []int, fields map[string][]int) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		idx := append(append([]int(nil), prefix...), i)
		if name == "" && opts == "inline" && f.Type.Kind() == reflect.Struct {
			collectFields(f.Type, idx, fields)
			continue
		}
		if name != "" && name != "-" {
			fields[name] = idx
		}
	}
}

func wrap(path string, n *yaml.Node, err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if te, ok := err.(*yaml.TypeError); ok && len(te.Errors) > 0 {
		msg = te.Errors[0]
		if i := strings.Index(msg, ": "); i >= 0 && strings.HasPrefix(msg, "line ") {
			msg = msg[i+2:]
		}
	}
	return errAt(path, "%s (line %d)", msg, n.Line)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
