package route

// Table maps tags to the outputs whose patterns match them. It is immutable after New and safe for
// concurrent use; callers on a hot path keep a Cache per goroutine.
type Table struct {
	outputs [][]*Pattern // per output index, its patterns
}

// New compiles the match patterns of each output, in output order.
func New(matches [][]string) (*Table, error) {
	t := &Table{outputs: make([][]*Pattern, len(matches))}
	for i, ms := range matches {
		for _, m := range ms {
			p, err := Compile(m)
			if err != nil {
				return nil, err
			}
			t.outputs[i] = append(t.outputs[i], p)
		}
	}
	return t, nil
}

// Lookup appends to dst the indexes of the outputs that tag goes to.
func (t *Table) Lookup(dst []int, tag string) []int {
	for i, ps := range t.outputs {
		for _, p := range ps {
			if p.Match(tag) {
				dst = append(dst, i)
				break
			}
		}
	}
	return dst
}

// Cache remembers the last tag looked up, since consecutive records of one file nearly always
// share a tag. Not safe for concurrent use: one per goroutine.
type Cache struct {
	t    *Table
	tag  string
	outs []int
	ok   bool
}

// NewCache returns a cache over t.
func (t *Table) NewCache() *Cache { return &Cache{t: t} }

// Lookup returns the outputs for tag; the slice is valid until the next call.
func (c *Cache) Lookup(tag string) []int {
	if c.ok && c.tag == tag {
		return c.outs
	}
	c.outs = c.t.Lookup(c.outs[:0], tag)
	c.tag, c.ok = tag, true
	return c.outs
}
