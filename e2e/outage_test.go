package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestUnreachableElasticsearch: skiff started with its Elasticsearch on a closed port keeps
// running, answers /healthz, exits 0 on SIGTERM within the shutdown timeout, and has not moved
// its positions: restarted against the real Elasticsearch it delivers every line exactly once.
func TestUnreachableElasticsearch(t *testing.T) {
	e := newEnv(t, true)
	w := newWorkload(t, e.root, 4, 4)
	defer w.closeAll()
	w.writeRound(200)

	closed := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	p := e.start(e.writeConfig("unreachable.yaml", e.config(e.esOutput("es-outage", closed))))

	deadline := time.Now().Add(time.Minute)
	for !e.healthz() {
		p.mustRun()
		if time.Now().After(deadline) {
			t.Fatal("/healthz did not answer 200 within a minute")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// skiff has read the files and is trying to send them.
	e.waitFor("records read", w.expected(), p, func() int {
		m, err := e.metrics()
		if err != nil {
			return 0
		}
		return int(metricSum(m, "skiff_input_records_total"))
	})
	// Give it a few flush intervals to try (and fail) to send.
	time.Sleep(3 * time.Second)
	if !e.healthz() {
		t.Error("/healthz does not answer 200 while Elasticsearch is unreachable")
	}
	p.mustRun()
	p.term()
	if n := e.count(nil); n != 0 {
		t.Fatalf("%d documents in Elasticsearch from a skiff that could not reach it", n)
	}
	e.checkPositionsAtZero()

	// Same data_dir, now the real Elasticsearch: nothing was acknowledged, so everything comes.
	p = e.start(e.writeConfig("reachable.yaml", e.config(e.esOutput("es-outage"))))
	e.waitFor("documents in Elasticsearch", w.expected(), p, func() int { return e.count(nil) })
	p.term()
	w.verify(e.allDocs())
}

// checkPositionsAtZero fails the test unless every file in data_dir/positions.json (when it
// exists) is at offset 0: nothing was delivered, so no position may have moved.
func (e *env) checkPositionsAtZero() {
	e.t.Helper()
	files, ok := e.positions()
	if !ok {
		return
	}
	for _, f := range files {
		if f.Offset != 0 {
			e.t.Errorf("positions.json: %s at offset %d although nothing was delivered", f.Path, f.Offset)
		}
	}
	e.t.Logf("positions.json: %d files, none past offset 0", len(files))
}

// positionEntry is one file of data_dir/positions.json.
type positionEntry struct {
	Path   string `json:"path"`
	Offset int64  `json:"offset"`
}

// positions reads data_dir/positions.json; ok is false when it does not exist (yet).
func (e *env) positions() (files []positionEntry, ok bool) {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dataDir, "positions.json"))
	if os.IsNotExist(err) {
		return nil, false
	}
	if err != nil {
		e.t.Fatal(err)
	}
	var pos struct {
		Files []positionEntry `json:"files"`
	}
	if err := json.Unmarshal(b, &pos); err != nil {
		e.t.Fatalf("positions.json: %v: %s", err, truncate(string(b), 500))
	}
	return pos.Files, true
}
