package config

import (
	"testing"
	"time"
)

// TestFlushIntervalDefaults: each output type gets its own default flush interval, and a value
// given in the file is kept.
func TestFlushIntervalDefaults(t *testing.T) {
	text := base + `  - name: es-set
    type: elasticsearch
    hosts: ["http://127.0.0.1:9200"]
    flush_interval: 2s
`
	c, err := Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Duration{
		"es":     DefaultESFlushInterval,
		"es-set": 2 * time.Second,
		"f":      DefaultFileFlushInterval,
	}
	for _, o := range c.Outputs {
		if got := o.FlushInterval.D(); got != want[o.Name] {
			t.Errorf("%s: flush_interval %v, want %v", o.Name, got, want[o.Name])
		}
	}
	if DefaultESFlushInterval >= time.Second {
		t.Errorf("DefaultESFlushInterval %v: a record could not reach Elasticsearch within a second", DefaultESFlushInterval)
	}
}
