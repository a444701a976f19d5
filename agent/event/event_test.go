package event

import (
	"testing"
)

func TestAckCountsBatchReferences(t *testing.T) {
	var notified []*Ack
	a1 := NewAck(100, func(a *Ack) { notified = append(notified, a) })
	a2 := NewAck(200, func(a *Ack) { notified = append(notified, a) })
	recs := []Record{{Ack: a1}, {Ack: a1}, {Ack: a2}}
	var es, file Batch
	for i := range recs {
		es.Add(&recs[i])
		file.Add(&recs[i])
	}
	if got := a1.Pending(); got != 5 { // seal + 2 records × 2 batches
		t.Fatalf("a1 pending = %d, want 5", got)
	}
	a1.Release(1, Delivered) // the readers' seals
	a2.Release(1, Delivered)
	es.Done(Delivered)
	if len(notified) != 0 {
		t.Fatalf("notified before every output finished: %v", notified)
	}
	file.Done(Rejected)
	if len(notified) != 2 || notified[0] != a1 || notified[1] != a2 {
		t.Fatalf("notified = %v, want a1 then a2", notified)
	}
	if a1.Failed() || a2.Failed() {
		t.Fatal("Rejected (dead-lettered) must count as done, not failed")
	}
}

func TestBatchSplitKeepsReferences(t *testing.T) {
	a := NewAck(10, nil)
	recs := make([]Record, 6)
	var b Batch
	for i := range recs {
		recs[i].Ack = a
		recs[i].Offset = int64(i)
		b.Add(&recs[i])
	}
	a.Release(1, Delivered)
	failed := b.Split(func(i int, r *Record) bool { return r.Offset%2 == 0 })
	if b.Len() != 3 || failed.Len() != 3 {
		t.Fatalf("split %d/%d, want 3/3", b.Len(), failed.Len())
	}
	b.Done(Delivered)
	if a.Pending() != 3 {
		t.Fatalf("pending after first half = %d, want 3", a.Pending())
	}
	failed.Done(Failed)
	if a.Pending() != 0 || !a.Failed() {
		t.Fatalf("pending %d failed %v, want 0 and true", a.Pending(), a.Failed())
	}
}

func TestBatchDoneTwicePanics(t *testing.T) {
	var b Batch
	b.Done(Delivered)
	defer func() {
		if recover() == nil {
			t.Fatal("second Done did not panic")
		}
	}()
	b.Done(Delivered)
}

func TestAppendID(t *testing.T) {
	src := &Source{IDPrefix: "00ff00ff00ff00ff"}
	tests := []struct {
		r    Record
		want string
	}{
		{Record{Source: src, Offset: 0}, "00ff00ff00ff00ff-0"},
		{Record{Source: src, Offset: 0x1a2b}, "00ff00ff00ff00ff-1a2b"},
		{Record{Source: src, Offset: 5, ID: "audit-1-ResponseComplete"}, "audit-1-ResponseComplete"},
	}
	for _, tt := range tests {
		if got := string(tt.r.AppendID(nil)); got != tt.want {
			t.Errorf("AppendID = %q, want %q", got, tt.want)
		}
	}
}
