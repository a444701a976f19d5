// Package template renders the names outputs derive from records: Elasticsearch index names and
// gzip file paths.
package template

import "github.com/skiff-logs/skiff/agent/event"

// Mode says what a rendered name is for, which decides how values are sanitised.
type Mode int

const (
	// Index: Elasticsearch index names (lower-case, no \ / * ? " < > | space , #, not starting
	// with - _ +, not . or ..).
	Index Mode = iota
	// Path: file paths (placeholder values never contain '/' or are "." or "..").
	Path
)

// Template is a parsed name template. It is immutable and safe for concurrent use.
type Template struct{}

// Parse parses s: strftime directives (%Y %m %d %H %M %S %j %%) on the record time in UTC,
// {tag}, {tag_parts[N]} (negative N counts from the end), and {dotted.field} placeholders looked
// up in the record (fixed fields such as kubernetes.namespace, then Fields), which render as
// "none" when absent. PLACEHOLDER: being written by the outputs/template owner.
func Parse(s string, mode Mode) (*Template, error) {
	panic("template.Parse: not written yet")
}

// Append renders the template for r onto dst.
func (t *Template) Append(dst []byte, r *event.Record) []byte {
	panic("template.Append: not written yet")
}
