package elasticsearch

import (
	"sync"
	"testing"
	"time"
)

// TestFlushIntervalCountsFromSend: FlushInterval bounds how long a record waits from Send, not
// from the moment a worker takes it. A batch queued while the only worker waits on a slow
// request has waited longer than FlushInterval when the worker comes back, so it is sent at
// once instead of after another full interval.
func TestFlushIntervalCountsFromSend(t *testing.T) {
	const interval = 1500 * time.Millisecond
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	f := newFakeES(t, func(req int, items []bulkItem) (int, []int) {
		if req == 0 {
			<-release
		}
		return 200, nil
	})
	s := newSink(t, "interval")
	cfg := fastConfig(f.srv.URL)
	cfg.FlushInterval = interval
	o := start(t, cfg)

	send(t, o, s.batch(0, 1, nil))
	waitFor(t, func() bool { return len(f.bulkRequests()) == 1 }) // after about one interval
	send(t, o, s.batch(1, 1, nil))
	// The worker is stuck in the first request for longer than the second batch may wait.
	time.Sleep(interval + 500*time.Millisecond)
	released := time.Now()
	unblock()
	waitFor(t, func() bool { return len(f.bulkRequests()) == 2 })
	reqs := f.bulkRequests()
	if len(reqs[1].items) != 1 || reqs[1].items[0].ID != s.id(1) {
		t.Fatalf("second request holds %v, want the second batch's record", reqs[1].items)
	}
	if wait := reqs[1].at.Sub(released); wait > interval/2 {
		t.Errorf("the second batch, queued %v before the worker was free, was sent %v after that; "+
			"it had waited its FlushInterval (%v) already and should have gone at once",
			interval+500*time.Millisecond, wait.Round(time.Millisecond), interval)
	}
	s.wait(5 * time.Second)
}
