package e2e

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// waitDelivered waits until Elasticsearch holds every record written so far into f (counted by
// the file's tag, which no other file shares).
func (e *env) waitDelivered(p *proc, w *workload, f *logFile) {
	e.t.Helper()
	e.waitFor(fmt.Sprintf("records of %s", f.tag()), w.written(f), p, func() int { return e.count(tagQuery(f.tag())) })
}

// waitSeen waits until Elasticsearch holds at least n records of f: when they include one of
// the current file, skiff has found it.
func (e *env) waitSeen(p *proc, f *logFile, n int) {
	e.t.Helper()
	e.waitAtLeast(fmt.Sprintf("%d records of %s", n, f.tag()), n, p, func() int { return e.count(tagQuery(f.tag())) })
}

// lifecycle says which files of a workload are rotated, copy-truncated and deleted. rotateAgain
// files (some of rotate's) are rotated a second time later on.
type lifecycle struct {
	rotate, rotateAgain, truncate, remove []*logFile
}

// shipScenario writes rounds × perRound messages into every file of w while skiff runs, and
// meanwhile rotates, copy-truncates and deletes the files lc names. between is called after
// every round (the SIGKILL test restarts skiff there) and returns the process to wait on.
//
// Rename rotation happens after the first round, once skiff has found the file (the kubelet only
// rotates files the agent has long known; draining a rotated file it is still reading is what is
// tested), and for rotateAgain once more near the end. Copytruncate and deletion wait until Elasticsearch holds everything written to the
// file: with copytruncate, lines written between skiff's last read and the truncation are lost
// by any tailer (the data is gone from the file it follows), so an exact assertion needs that
// barrier; after truncating, the test pauses for a few scan intervals before writing again, so
// skiff sees the file shrink before it grows past the old offset (the same inherent race).
func (e *env) shipScenario(w *workload, lc lifecycle, p *proc, rounds, perRound int, between func(round int) *proc) *proc {
	e.t.Helper()
	firstRotation := map[*logFile]int{}
	for r := range rounds {
		w.writeRound(perRound)
		switch r {
		case 0:
			for _, f := range lc.rotate {
				e.waitSeen(p, f, 1)
				firstRotation[f] = w.written(f)
				w.rotate(f)
			}
		case rounds - 2:
			for _, f := range lc.rotateAgain {
				e.waitSeen(p, f, firstRotation[f]+1) // skiff has found the new 0.log
				w.rotate(f)
			}
		case rounds / 2:
			for _, f := range lc.truncate {
				e.waitDelivered(p, w, f)
				w.copyTruncate(f)
			}
			if len(lc.truncate) > 0 {
				time.Sleep(1500 * time.Millisecond)
			}
		}
		if between != nil {
			p = between(r)
		} else {
			time.Sleep(500 * time.Millisecond)
		}
	}
	for _, f := range lc.remove {
		e.waitDelivered(p, w, f)
		w.remove(f)
	}
	return p
}

// TestShipExactlyOnce: 50 container logs (CRI and docker json-file) × 2,000 messages written
// while skiff runs, with rename rotation, copytruncate and deletion; Elasticsearch must hold each
// record exactly once, byte for byte, with its stream, time and Kubernetes fields.
func TestShipExactlyOnce(t *testing.T) {
	e := newEnv(t, true)
	w := newWorkload(t, e.root, 50, 1)
	defer w.closeAll()
	cfg := e.writeConfig("skiff.yaml", e.config(e.esOutput("es-ship")))
	p := e.start(cfg)

	lc := lifecycle{rotate: w.files[0:10], rotateAgain: w.files[0:3], truncate: w.files[10:15], remove: w.files[15:20]}
	p = e.shipScenario(w, lc, p, 5, 400, nil)

	e.waitFor("documents in Elasticsearch", w.expected(), p, func() int { return e.count(nil) })
	p.term()
	w.verify(e.allDocs())
}

// TestSigkillRestarts: the same kind of workload, with skiff SIGKILLed five times at random
// moments while files are written and shipped, and restarted on the same data_dir each time;
// two files are also rotated while skiff is down, one of them twice. Still every record
// exactly once.
func TestSigkillRestarts(t *testing.T) {
	e := newEnv(t, true)
	w := newWorkload(t, e.root, 20, 2)
	defer w.closeAll()
	cfg := e.writeConfig("skiff.yaml", e.config(e.esOutput("es-kill")))
	p := e.start(cfg)

	// Ten rounds of writing; after five of them, chosen at random, SIGKILL after a random delay
	// of up to a second, while skiff is still reading and shipping what was just written (or
	// writing positions, or idle), then restart at once or a little later.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	const rounds = 10
	killAt := map[int]bool{}
	for _, r := range rng.Perm(rounds)[:5] {
		killAt[r] = true
	}
	kills := 0
	downRotate := w.files[8:10]
	restart := func(round int) *proc {
		if !killAt[round] {
			time.Sleep(300 * time.Millisecond)
			return p
		}
		time.Sleep(time.Duration(rng.IntN(1000)) * time.Millisecond)
		t.Logf("round %d: SIGKILL skiff (pid %d); %d records written; %s", round, p.cmd.Process.Pid, w.expected(), e.brief("es-kill"))
		p.kill()
		kills++
		if kills == 1 {
			// The kubelet rotates while skiff is down: the rest of the old file (some of it
			// never read) is only reachable as 0.log.<timestamp> next to the new 0.log; a
			// second rotation leaves a file skiff never saw between the two.
			for i, f := range downRotate {
				for range i + 1 {
					w.writeTo(f, 50)
					w.rotate(f)
				}
			}
		}
		time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
		p = e.start(cfg)
		return p
	}
	lc := lifecycle{rotate: w.files[0:4], truncate: w.files[4:6], remove: w.files[6:8]}
	p = e.shipScenario(w, lc, p, rounds, 200, restart)
	if kills != 5 {
		t.Fatalf("skiff was killed %d times, want 5", kills)
	}

	e.waitFor("documents in Elasticsearch", w.expected(), p, func() int { return e.count(nil) })
	p.term()
	w.verify(e.allDocs())
}
