package main

import (
	"bytes"
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"
)

// TestBenchModes runs `skiff bench --idle` and `--latency` briefly against an in-process latency
// blackhole and checks that they print their result lines with plausible numbers: the latency
// mode's count is every line it wrote and its quantiles are ordered.
func TestBenchModes(t *testing.T) {
	idleLine := regexp.MustCompile(`(?m)^idle CPU: ([0-9.]+) cpu-s over ([0-9.]+) s = ([0-9.]+) % of one core +peak RSS [0-9.]+ MiB$`)
	written := regexp.MustCompile(`(?m)^latency: (\d+) lines written at 500 lines/s over 5 files for 1s$`)
	quantiles := regexp.MustCompile(`(?m)^latency: count (\d+) +p50 ([0-9.]+) ms +p99 ([0-9.]+) ms +max ([0-9.]+) ms$`)
	cpuLine := regexp.MustCompile(`(?m)^CPU while writing and draining: [0-9.]+ cpu-s \(includes the writer goroutine, in this mode only\)`)
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, out string)
	}{
		{"idle", []string{"--idle", "--files", "5", "--duration", "1s"}, func(t *testing.T, out string) {
			m := idleLine.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("no idle CPU line in\n%s", out)
			}
			cpu, _ := strconv.ParseFloat(m[1], 64)
			wall, _ := strconv.ParseFloat(m[2], 64)
			if wall < 1 || cpu < 0 || cpu > 2*wall {
				t.Errorf("implausible: %s cpu-s over %s s", m[1], m[2])
			}
		}},
		{"latency", []string{"--latency", "--files", "5", "--rate", "500", "--duration", "1s"}, func(t *testing.T, out string) {
			w, q := written.FindStringSubmatch(out), quantiles.FindStringSubmatch(out)
			if w == nil || q == nil || !cpuLine.MatchString(out) {
				t.Fatalf("missing result lines in\n%s", out)
			}
			n, _ := strconv.Atoi(w[1])
			if n < 100 || q[1] != w[1] {
				t.Errorf("%s lines written, %s delays counted; want the same, at least 100", w[1], q[1])
			}
			var v [3]float64
			for i := range v {
				v[i], _ = strconv.ParseFloat(q[2+i], 64)
			}
			if v[0] <= 0 || v[0] > v[1] || v[1] > v[2] {
				t.Errorf("want 0 < p50 <= p99 <= max, got %v", v)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es := httptest.NewServer((&latencyRecorder{}).handler())
			defer es.Close()
			var stdout, stderr bytes.Buffer
			if code := cmdBench(append(tt.args, "--es", es.URL), &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
			}
			tt.check(t, stdout.String())
		})
	}
}

// TestLatencyRecorder checks that every marker in a bulk body gives one delay.
func TestLatencyRecorder(t *testing.T) {
	var r latencyRecorder
	r.add([]byte(`{"index":{}}
{"message":"` + latencyMarker + `1 seq=0"}
{"index":{}}
{"message":"no marker t=5"}
{"index":{}}
{"message":"` + latencyMarker + `2 seq=1"}
`))
	if rep := r.report(); rep.Count != 2 || rep.Max <= 0 || rep.P50 > rep.Max {
		t.Errorf("report %+v, want 2 positive delays", rep)
	}
}
