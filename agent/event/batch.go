package event

// Batch is a group of records handed to one output by one Send. It tracks which Acks its records
// belong to, run-length encoded, so that Done costs one atomic operation per chunk, not per record.
//
// A Batch is built by one goroutine (Add), then given to an output, which calls Done exactly once.
type Batch struct {
	Records []*Record
	refs    []ackRef
	done    bool
}

type ackRef struct {
	ack *Ack
	n   int64
}

// Add appends r and takes a reference on its Ack (if any).
func (b *Batch) Add(r *Record) {
	b.Records = append(b.Records, r)
	if r.Ack == nil {
		return
	}
	r.Ack.Retain(1)
	if k := len(b.refs) - 1; k >= 0 && b.refs[k].ack == r.Ack {
		b.refs[k].n++
		return
	}
	b.refs = append(b.refs, ackRef{ack: r.Ack, n: 1})
}

// Len is the number of records in the batch.
func (b *Batch) Len() int { return len(b.Records) }

// Done reports the fate of every record in the batch and releases their Acks. It must be called
// exactly once per batch that was given to an output; a second call panics, because a double
// release would move positions past undelivered records.
func (b *Batch) Done(s Status) {
	if b.done {
		panic("event: Batch.Done called twice")
	}
	b.done = true
	for _, r := range b.refs {
		r.ack.Release(r.n, s)
	}
}

// Split moves the records of b for which keep returns false into a new batch, with their
// references, and returns it. Outputs use it to finish part of a batch (e.g. the items a bulk
// request accepted) and retry the rest. Both batches must then be Done separately.
func (b *Batch) Split(keep func(i int, r *Record) bool) *Batch {
	out := &Batch{}
	var kept []*Record
	var keptRefs []ackRef
	add := func(refs *[]ackRef, a *Ack) {
		if a == nil {
			return
		}
		if k := len(*refs) - 1; k >= 0 && (*refs)[k].ack == a {
			(*refs)[k].n++
			return
		}
		*refs = append(*refs, ackRef{ack: a, n: 1})
	}
	for i, r := range b.Records {
		if keep(i, r) {
			kept = append(kept, r)
			add(&keptRefs, r.Ack)
		} else {
			out.Records = append(out.Records, r)
			add(&out.refs, r.Ack)
		}
	}
	b.Records, b.refs = kept, keptRefs
	return out
}
