package agent

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/skiff-logs/skiff/agent/config"
	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/agent/metrics"
)

func TestParseJSON(t *testing.T) {
	a := &Agent{cfg: &config.Config{Kubernetes: config.Kubernetes{JSONKey: "app"}}, jsonSkipped: metrics.KubeJSONSkipped}
	tests := []struct {
		name, msg string
		fields    map[string]any // before
		want      map[string]any // after; nil: unchanged
	}{
		{"object", `{"level":"info","msg":"started","port":8080}`, nil,
			map[string]any{"app": map[string]any{"level": "info", "msg": "started", "port": json.Number("8080")}}},
		{"big integer keeps its digits", `{"id":12345678901234567890123}`, nil,
			map[string]any{"app": map[string]any{"id": json.Number("12345678901234567890123")}}},
		{"nested, leading blanks", " \t{\"a\":{\"b\":[1,\"x\",null,true]},\"message\":\"inner\"}", nil,
			map[string]any{"app": map[string]any{"a": map[string]any{"b": []any{json.Number("1"), "x", nil, true}}, "message": "inner"}}},
		{"existing fields kept", `{"k":"v"}`, map[string]any{"other": 1},
			map[string]any{"other": 1, "app": map[string]any{"k": "v"}}},
		{"empty object", `{}`, nil, map[string]any{"app": map[string]any{}}},
		{"plain text", `GET / 200`, nil, nil},
		{"array", `[1,2]`, nil, nil},
		{"string", `"quoted"`, nil, nil},
		{"truncated object", `{"level":"info","msg":"cut sho`, nil, nil},
		{"trailing text", `{"a":1} and more`, nil, nil},
		{"empty", ``, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &event.Record{Message: []byte(tt.msg), Fields: tt.fields}
			before := metrics.Value(a.jsonSkipped)
			a.parseJSON(r)
			skipped := metrics.Value(a.jsonSkipped) - before
			if string(r.Message) != tt.msg {
				t.Errorf("message changed to %q", r.Message)
			}
			if tt.want == nil {
				if !reflect.DeepEqual(r.Fields, tt.fields) || skipped != 1 {
					t.Errorf("fields %v (skipped %v); want them unchanged and the record counted", r.Fields, skipped)
				}
				return
			}
			if !reflect.DeepEqual(r.Fields, tt.want) || skipped != 0 {
				t.Errorf("fields %#v (skipped %v), want %#v", r.Fields, skipped, tt.want)
			}
		})
	}
}
