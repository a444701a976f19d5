package tail

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/agent/positions"
)

// recordSize is what a record costs in a chunk besides its message, for the Budget.
const recordSize = int64(unsafe.Sizeof(event.Record{}))

type handleFunc = func(ctx context.Context, c *event.Chunk) error

// startMode says where a file without a matching positions entry starts.
type startMode uint8

const (
	// startNew: at 0, the file is new.
	startNew startMode = iota
	// startInitial: found by the first scan; at its end when Config.StartAtEnd.
	startInitial
)

// reader reads one file (one inode). It has no goroutine of its own: poke queues a turn, and one
// of the Tailer's few workers runs it (turns.go), so that a thousand quiet files hold no stacks
// at all. The fields after "goroutine-local" are touched by the worker running the reader's turn
// (one at a time); the scanner talks to it through poke, gone and readOff, and waits for drained
// (closed once the file, no longer at its path, was read to its end).
type reader struct {
	t      *Tailer
	f      *os.File
	key    positions.Key
	path   string // the discovered path: Describe, positions, rotation checks
	name   string // the file opened: path, or a rotated sibling of its target
	target string // name with symlinks resolved: fsnotify events name it
	origin string // the resolved path the file had at path (positions Entry.Target)
	mode   startMode
	after  <-chan struct{} // read nothing before it closes (the previous file of path drained)

	turn    atomic.Int32 // turnIdle, turnQueued, ... (turns.go)
	gone    atomic.Bool  // path no longer leads to this file
	readOff atomic.Int64 // file offset read up to, for the scanner's size check
	drained chan struct{}
	// idFP is the fingerprint of the current generation once begun (0 before): the scanner
	// matches the compressed copy of a file against the reader that already reads it.
	idFP atomic.Uint64
	// isGz: the file is a gzip-compressed rotated file, read through gz (decompressed
	// offsets); it is complete, so it is read once to its end.
	isGz bool

	// goroutine-local: the worker running the reader's turn
	done     bool  // outcome of the last turn: the file is done
	err      error // ... or reading it failed
	desc     event.Source
	g        *generation
	nextGen  uint32 // generation number after a truncation
	truncs   int
	drainedC bool

	buf        []byte
	pooled     *[]byte
	start      int   // buf[start:end] is unconsumed: the current, incomplete line
	end        int   // end of the data read into buf
	scan       int   // where the search for '\n' goes on
	lineOff    int64 // file offset of buf[start]
	off        int64 // file offset of buf[end]: where the next read starts
	discarding bool  // the current line is longer than MaxLineBytes: buf keeps its first part
	dropped    int64 // bytes of the current line discarded so far
	size       int64 // size at the last fstat
	fpChecked  time.Time
	lastGrowth time.Time
	goneAt     time.Time
	now        time.Time // time of the current step: the read time of parse errors

	recs       []event.Record // the chunk being filled
	arena      []byte         // the block its messages go to now
	blocks     [][]byte       // every block of its messages (arena the last): freed with it
	arenaBytes int            // message bytes in the current chunk
	msgMean    int64          // mean message length of the last chunk: sizes the next (growRecs)
	lineEnd    int64          // file offset after the last line consumed
	counted    int64          // lineEnd already counted in InputBytes
	nParseErr  int
	nTrunc     int
	nTruncB    int64
	nInvalid   int
	gz         *gzStream // open while a gzip file is being read
	gzDone     bool      // the gzip file was read to its end (or its damage)
	gzDamaged  bool      // ... and it ended at damage: its last, unterminated line is cut
}

// generation is one life of the file between truncations.
type generation struct {
	num     uint32
	fp      uint64
	src     *event.Source
	parser  Parser
	tracker *positions.Tracker
	acked   int64 // End of the last registered chunk
}

func newReader(t *Tailer, f *os.File, path, name, target, origin string, k positions.Key, mode startMode, after <-chan struct{}) *reader {
	r := &reader{
		t: t, f: f, key: k,
		path: path, name: name, target: target, origin: origin,
		mode: mode, after: after,
		drained: make(chan struct{}),
		isGz:    isGz(name),
	}
	if t.cfg.Describe != nil {
		r.desc = t.cfg.Describe(path)
	} else {
		r.desc = event.Source{Tag: t.cfg.Input}
	}
	if r.desc.Path == "" {
		r.desc.Path = path
	}
	return r
}

// logger returns the input's logger with the file's path (and the name of the file opened,
// when it is another). It is made when something is logged, not kept: a logger with attributes
// costs ~500 bytes, which a thousand quiet files would hold for nothing.
func (r *reader) logger() *slog.Logger {
	if r.name != r.path {
		return r.t.log.With("path", r.path, "file", r.name)
	}
	return r.t.log.With("path", r.path)
}

func (r *reader) close(retire bool) {
	var fp uint64
	if r.g != nil {
		fp = r.g.fp
		r.g.tracker.Close()
	}
	if r.gz != nil {
		r.gz.Close()
		r.gz = nil
	}
	_ = r.f.Close()
	r.releaseBuf()
	if !r.drainedC {
		close(r.drained)
	}
	r.t.finish(r, retire, fp)
}

// activate is one turn of the reader, run by a worker of the Tailer (turns.go): it reads what
// the file has now and decides whether the file is done. The outcome is left in r.done and
// r.err.
func (r *reader) activate(ctx context.Context, handle handleFunc) {
	r.done, r.err = false, r.step(ctx, handle)
	if r.err == nil {
		r.done, r.err = r.finished(ctx, handle)
	}
}

// step reads whatever the file has now, up to its end.
func (r *reader) step(ctx context.Context, handle handleFunc) error {
	if r.isGz {
		return r.stepGz(ctx, handle)
	}
	fi, err := r.f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", r.name, err)
	}
	size := fi.Size()
	r.now = time.Now()
	if r.g != nil {
		switch {
		case size < r.off:
			if err := r.readCopy(ctx, handle); err != nil {
				return err
			}
			r.truncated("file is shorter than what was read")
		case size > r.size && r.now.Sub(r.fpChecked) >= r.t.cfg.ScanInterval:
			// A copytruncated file that grew past our offset again is only told apart by its
			// first line.
			r.fpChecked = r.now
			if fp, ok, err := fingerprint(r.f); err == nil && ok && fp != r.g.fp {
				if err := r.readCopy(ctx, handle); err != nil {
					return err
				}
				r.truncated("the first line of the file changed")
			}
		}
	}
	if r.g == nil {
		r.size = size
		ok, err := r.begin(size)
		if err != nil || !ok {
			return err
		}
	} else if size != r.size {
		r.size = size
		r.t.cfg.Positions.SetSize(r.key, r.g.fp, r.g.num, size)
	}
	return r.readToEOF(ctx, handle)
}

// begin starts a file generation once the file's fingerprint is stable. It reports false
// while it is not (the first line is still incomplete).
func (r *reader) begin(size int64) (bool, error) {
	fp, ok, err := fingerprint(r.f)
	if err != nil || !ok {
		return false, err
	}
	cfg := &r.t.cfg
	var gen uint32
	var off int64
	if r.truncs == 0 {
		e, known := cfg.Positions.Get(r.key)
		switch {
		case known && e.Fingerprint == fp:
			gen, off = e.Generation, e.Offset
			if size < off {
				r.logger().Info("file is shorter than its saved position: it was truncated while skiff was not reading it; reading it from the start",
					"offset", off, "size", size)
				gen, off = gen+1, 0
			}
		case r.mode == startInitial && cfg.StartAtEnd:
			if off, err = lastLineEnd(r.f, size, cfg.MaxLineBytes); err != nil {
				return false, err
			}
		}
		if known && e.Fingerprint != fp {
			r.logger().Debug("the inode of a known file was reused: reading the new file as new")
		}
	} else {
		gen = r.nextGen
	}
	src := r.desc
	src.IDPrefix = idPrefix(r.key, fp, gen)
	g := &generation{num: gen, fp: fp, src: &src, acked: off}
	entry := positions.Entry{Key: r.key, Fingerprint: fp, Generation: gen, Path: r.path, Offset: off, Size: size}
	if r.origin != r.path {
		entry.Target = r.origin
	}
	if off > 0 {
		first, err := firstLine(r.f, cfg.MaxLineBytes)
		if err != nil {
			return false, err
		}
		g.parser = cfg.NewParser(first, cfg.MaxLineBytes)
	}
	g.tracker = positions.NewTracker(cfg.Positions, entry)
	if cfg.Budget != nil {
		g.tracker.SetUncharge(cfg.Budget.releaseChunk)
	}
	r.g = g
	r.idFP.Store(fp)
	r.resetBuffer(off)
	return true, nil
}

func (r *reader) resetBuffer(off int64) {
	r.start, r.end, r.scan = 0, 0, 0
	r.discarding, r.dropped = false, 0
	r.off, r.lineOff, r.lineEnd, r.counted = off, off, off, off
	r.readOff.Store(off)
}

// readCopy runs when the file was truncated under the current generation: if copytruncate left
// a plain copy of the old content next to it (a sibling <origin>.<suffix> with the same first
// line, longer than what was read), the rest of the old content is read from the copy as part
// of the same generation, so the lines written between skiff's last read and the truncation are
// shipped, with the ids they would have had, instead of lost. A copy already compressed is not
// read (its bytes count as lost).
func (r *reader) readCopy(ctx context.Context, handle handleFunc) error {
	dir, names := siblingNames(r.origin)
	for _, n := range names {
		if isGz(n) {
			continue
		}
		name := filepath.Join(dir, n)
		k, fi, ok := statRegular(name)
		if !ok || k == r.key || fi.Size() <= r.off {
			continue
		}
		if fp, ok := fileFingerprint(name); !ok || fp != r.g.fp {
			continue
		}
		f, err := os.Open(name)
		if err != nil {
			continue
		}
		r.logger().Info("file truncated: reading the rest of its old content from the copy", "copy", name, "offset", r.off, "size", fi.Size())
		orig := r.f
		r.f, r.size = f, fi.Size()
		err = r.readToEOF(ctx, handle)
		r.f = orig
		_ = f.Close()
		return err
	}
	return nil
}

// truncated ends the current generation after a truncation (copytruncate): the file is read
// again from 0 as a new generation, with new document ids. Called between chunks.
func (r *reader) truncated(why string) {
	lost := r.size - r.lineOff // read-but-incomplete and never-read bytes of the old content
	if lost > 0 {
		r.t.m.lost.Add(float64(lost))
	} else {
		lost = 0
	}
	r.logger().Info("file truncated: reading it again from the start", "reason", why, "offset", r.off, "lost_bytes", lost)
	r.nextGen = r.g.num + 1
	r.truncs++
	r.g.tracker.Close()
	r.g = nil
	r.recs = r.recs[:0]
	r.resetBuffer(0)
}

// readToEOF reads and processes until the end of the file, then flushes the chunk. With a
// Budget, it first waits for room for its working set, holding no buffer when idle.
func (r *reader) readToEOF(ctx context.Context, handle handleFunc) error {
	if b := r.t.cfg.Budget; b != nil {
		ws := r.t.workingSet
		if r.isGz {
			ws += gzWorkingSet
		}
		n, err := b.readers.acquire(ctx, ws)
		if err != nil {
			return err
		}
		defer b.readers.release(n)
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		r.ensureRoom()
		var n int
		var err error
		if r.isGz {
			n, err = r.readGz(r.buf[r.end:])
		} else {
			n, err = r.f.ReadAt(r.buf[r.end:], r.off)
		}
		if n > 0 {
			r.end += n
			r.off += int64(n)
			r.readOff.Store(r.off)
			r.lastGrowth = r.now
			if perr := r.process(ctx, handle); perr != nil {
				return perr
			}
		}
		if err == io.EOF || (err == nil && n == 0) {
			break
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", r.name, err)
		}
	}
	if err := r.flush(ctx, handle); err != nil {
		return err
	}
	if r.start == r.end && !r.discarding {
		// Idle: hold no read buffer. (The chunk, flushed, took its blocks.)
		r.releaseBuf()
	}
	return nil
}

// process consumes the complete lines in the buffer.
func (r *reader) process(ctx context.Context, handle handleFunc) error {
	max := r.t.cfg.MaxLineBytes
	for {
		i := bytes.IndexByte(r.buf[r.scan:r.end], '\n')
		if i < 0 {
			break
		}
		nl := r.scan + i
		end := r.lineOff + int64(nl+1-r.start) + r.dropped
		line := r.buf[r.start:nl]
		trunc := r.discarding || len(line) > max
		if trunc {
			r.countTruncated(int64(len(line)) + r.dropped - int64(max))
			line = trimPartialRune(line[:max])
		}
		if err := r.emit(ctx, handle, line, r.lineOff, end, trunc); err != nil {
			return err
		}
		r.lineOff, r.start, r.scan = end, nl+1, nl+1
		r.discarding, r.dropped = false, 0
	}
	r.scan = r.end
	if r.end-r.start > max {
		// Keep the line's first max bytes and drop the rest as it comes; the record is made
		// when its newline arrives, so its position is committed only after the whole line.
		kept := r.start + max
		r.dropped += int64(r.end - kept)
		r.end, r.scan = kept, kept
		r.discarding = true
	}
	return nil
}

func (r *reader) countTruncated(cut int64) {
	r.nTrunc++
	r.nTruncB += cut
}

// emit parses one line and, when the parser completes a record, adds it to the chunk.
func (r *reader) emit(ctx context.Context, handle handleFunc, line []byte, off, end int64, trunc bool) error {
	g := r.g
	r.lineEnd = end
	if g.parser == nil {
		g.parser = r.t.cfg.NewParser(line, r.t.cfg.MaxLineBytes)
	}
	rec := r.slot()
	if !g.parser.Parse(line, off, rec) {
		r.unslot()
		return nil
	}
	if trunc {
		rec.Flags |= event.FlagTruncated
	}
	return r.added(ctx, handle, rec)
}

// flushParser adds to the chunk, in offset order, a record for each fragment group the parser
// still holds (flagged truncated by the parser: its end never arrived). The file has ended for
// good, so the parser then holds nothing.
func (r *reader) flushParser(ctx context.Context, handle handleFunc) error {
	p := r.g.parser
	if p == nil {
		return nil
	}
	for {
		rec := r.slot()
		if !p.Flush(rec) {
			r.unslot()
			return nil
		}
		if err := r.added(ctx, handle, rec); err != nil {
			return err
		}
	}
}

// slot appends a zero record to the chunk for a parser to fill and returns it.
func (r *reader) slot() *event.Record {
	n := len(r.recs)
	if n == cap(r.recs) {
		r.growRecs()
	}
	r.recs = r.recs[:n+1]
	return &r.recs[n]
}

// unslot takes back the record slot returned by the last slot, unfilled.
func (r *reader) unslot() {
	n := len(r.recs) - 1
	r.recs[n] = event.Record{}
	r.recs = r.recs[:n]
}

// added finishes rec, the record the parser just completed in the chunk's last slot: it copies
// its message into the arena (making it valid UTF-8), counts it, sets its source, and flushes
// the chunk when it is full.
func (r *reader) added(ctx context.Context, handle handleFunc, rec *event.Record) error {
	g := r.g
	if utf8.Valid(rec.Message) {
		rec.Message = r.keep(rec.Message)
	} else {
		rec.Message = r.keepValid(rec.Message)
		rec.Flags |= event.FlagInvalidUTF8
		r.nInvalid++
	}
	if rec.Flags&event.FlagParseError != 0 {
		r.nParseErr++
		if rec.Time.IsZero() {
			rec.Time = r.now
		}
	}
	rec.Tag = g.src.Tag
	rec.Source = g.src
	if len(r.recs) >= r.t.cfg.ChunkRecords || r.charge() >= r.t.chunkBytes {
		return r.flush(ctx, handle)
	}
	return nil
}

// growRecs makes room for the records the chunk will still take: as many as its remaining bytes
// allow at the mean message length (the chunk's own, else the last chunk's, else the buffer's
// mean line length with a margin), and no more than the lines in the buffer and in what the
// file holds beyond it; never more than a chunk. A chunk that must grow again at least doubles,
// so that growth stays amortized whatever the estimates. Records are a third of what reading
// allocates (144 bytes each besides the message): slices sized for ChunkRecords, or doubled
// when a chunk closing at chunkBytes needed a few more, came to three record slots per record
// read in make bench-kube (now 1.17).
func (r *reader) growRecs() {
	n := len(r.recs)
	lines := int64(bytes.Count(r.buf[r.scan:r.end], newline))
	lineMean := int64(r.end-r.scan) / max(lines, 1)
	mean := lineMean
	margin := int64(16) // 1/16
	switch {
	case n > 0:
		mean = int64(r.arenaBytes) / int64(n)
	case r.msgMean > 0:
		mean = r.msgMean
	default:
		// A line is longer than its message by what the parser strips (CRI's timestamp,
		// stream and tag: ~40 bytes): a margin, so that the chunk need not grow again.
		margin = 4
	}
	rest := (r.t.chunkBytes - r.charge()) / (recordSize + mean)
	rest += rest / margin
	// The lines in the buffer, and those in what the file holds beyond it.
	if r.size > r.off {
		lines += (r.size - r.off) / max(lineMean, 1)
	}
	want := n + int(min(rest, lines)) + 1
	want = min(max(want, n+1), r.t.cfg.ChunkRecords)
	if n > 0 && want < 2*n {
		want = min(2*n, r.t.cfg.ChunkRecords)
	}
	old := r.recs
	r.recs = append(r.t.mem.records(want), old...)
	if old != nil {
		r.t.mem.free(nil, old)
	}
}

var newline = []byte{'\n'}

// charge is what the open chunk costs the Budget: its messages and its records.
func (r *reader) charge() int64 { return int64(r.arenaBytes) + int64(len(r.recs))*recordSize }

// reserve makes room for n more bytes in the arena. A new block is sized for what the buffer
// still holds, as far as the chunk can still take it, so one block usually serves a whole
// chunk; the block belongs to the chunk (freed with it).
func (r *reader) reserve(n int) {
	if cap(r.arena)-len(r.arena) >= n {
		return
	}
	size := int64(r.end - r.start)
	if left := r.t.chunkBytes - r.charge(); size > left {
		size = left
	}
	size = max(size, int64(n), 512)
	r.arena = r.t.mem.block(int(size))
	r.blocks = append(r.blocks, r.arena)
}

// keep copies a message into the arena; the result cannot be appended to in place.
func (r *reader) keep(msg []byte) []byte {
	r.reserve(len(msg))
	i := len(r.arena)
	r.arena = append(r.arena, msg...)
	r.arenaBytes += len(msg)
	return r.arena[i:len(r.arena):len(r.arena)]
}

// keepValid copies a message into the arena, replacing each invalid UTF-8 byte by U+FFFD.
func (r *reader) keepValid(msg []byte) []byte {
	r.reserve(3 * len(msg))
	i := len(r.arena)
	for len(msg) > 0 {
		c, w := utf8.DecodeRune(msg)
		if c == utf8.RuneError && w == 1 {
			r.arena = utf8.AppendRune(r.arena, utf8.RuneError)
		} else {
			r.arena = append(r.arena, msg[:w]...)
		}
		msg = msg[w:]
	}
	r.arenaBytes += len(r.arena) - i
	return r.arena[i:len(r.arena):len(r.arena)]
}

// trimPartialRune drops a UTF-8 sequence cut short at the end of b (by truncation).
func trimPartialRune(b []byte) []byte {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return b[:i]
			}
			return b
		}
	}
	return b
}

// flush hands the chunk to handle and registers its Ack. A chunk without records still moves
// the position when lines were consumed (e.g. lines a parser skipped).
func (r *reader) flush(ctx context.Context, handle handleFunc) error {
	g := r.g
	if g == nil {
		return nil
	}
	end := r.lineEnd
	if g.parser != nil {
		if p, ok := g.parser.PendingFrom(); ok && p < end {
			end = p
		}
	}
	if end < g.acked {
		end = g.acked
	}
	r.countChunk()
	if len(r.recs) == 0 {
		if end > g.acked {
			g.tracker.NewAck(end).Release(1, event.Delivered)
			g.acked = end
		}
		return nil
	}
	var ack *event.Ack
	if b := r.t.cfg.Budget; b != nil {
		// Backpressure: wait until the chunks in flight leave room for this one.
		n, err := b.chunks.acquire(ctx, r.charge())
		if err != nil {
			return err
		}
		ack = g.tracker.NewAckCharged(end, n, r.freeChunk())
	} else {
		ack = g.tracker.NewAckCharged(end, 0, r.freeChunk())
	}
	g.acked = end
	for i := range r.recs {
		r.recs[i].Ack = ack
	}
	r.msgMean = int64(r.arenaBytes) / int64(len(r.recs))
	c := &event.Chunk{Records: r.recs, Ack: ack}
	r.recs, r.arena, r.blocks = nil, nil, nil
	r.arenaBytes = 0
	if err := handle(ctx, c); err != nil {
		ack.Release(1, event.Failed)
		return err
	}
	ack.Release(1, event.Delivered)
	return nil
}

// freeChunk returns what gives the open chunk's memory (its message blocks and records) back
// to the recycler once its Ack completes.
func (r *reader) freeChunk() func() {
	mem, blocks, recs := r.t.mem, r.blocks, r.recs
	return func() { mem.free(blocks, recs) }
}

// countChunk adds the chunk's counts to the input metrics.
func (r *reader) countChunk() {
	m := &r.t.m
	if n := len(r.recs); n > 0 {
		m.records.Add(float64(n))
	}
	if b := r.lineEnd - r.counted; b > 0 {
		m.bytes.Add(float64(b))
		r.counted = r.lineEnd
	}
	if r.nParseErr > 0 {
		m.parseErrors.Add(float64(r.nParseErr))
		r.nParseErr = 0
	}
	if r.nTrunc > 0 {
		m.truncLines.Add(float64(r.nTrunc))
		m.truncBytes.Add(float64(r.nTruncB))
		r.nTrunc, r.nTruncB = 0, 0
	}
	if r.nInvalid > 0 {
		m.invalidUTF8.Add(float64(r.nInvalid))
		r.nInvalid = 0
	}
}

// finished decides, at the end of the file, whether a file whose path no longer leads to it is
// done: it has not grown for DrainGrace. Its last line, if it never got a newline, is then
// emitted as it is, and the fragments the parser still holds are emitted as truncated records,
// so the final position is the file's end.
func (r *reader) finished(ctx context.Context, handle handleFunc) (bool, error) {
	if !r.gone.Load() && !r.isGz {
		r.goneAt = time.Time{}
		return false, nil
	}
	if !r.drainedC {
		r.drainedC = true
		close(r.drained)
	}
	now := time.Now()
	if r.goneAt.IsZero() {
		r.goneAt = now
	}
	last := r.goneAt
	if r.lastGrowth.After(last) {
		last = r.lastGrowth
	}
	if now.Sub(last) < r.t.cfg.DrainGrace && !r.gzDone {
		return false, nil // a compressed file is complete: no grace
	}
	if r.g == nil {
		return true, nil
	}
	if r.end > r.start || r.discarding {
		line := r.buf[r.start:r.end]
		if r.discarding {
			r.countTruncated(int64(len(line)) + r.dropped - int64(r.t.cfg.MaxLineBytes))
			line = trimPartialRune(line)
		}
		if err := r.emit(ctx, handle, line, r.lineOff, r.off, r.discarding || r.gzDamaged); err != nil {
			return false, err
		}
		r.start = r.end
	}
	// Fragments whose end never came (a CRI "P" line, docker pieces) become truncated records;
	// with nothing pending, the chunk's Ack then covers the whole file.
	if err := r.flushParser(ctx, handle); err != nil {
		return false, err
	}
	if err := r.flush(ctx, handle); err != nil {
		return false, err
	}
	return true, nil
}

// ensureRoom makes sure the buffer has room to read into: it takes a buffer from the pool,
// moves the incomplete line to the front, or grows the buffer for a long line (up to
// MaxLineBytes plus one read).
func (r *reader) ensureRoom() {
	if r.buf == nil {
		r.pooled = r.t.bufs.Get().(*[]byte)
		r.buf = *r.pooled
		r.start, r.end, r.scan = 0, 0, 0
	}
	if len(r.buf)-r.end >= len(r.buf)/8 && r.end < len(r.buf) {
		return
	}
	if r.start > 0 {
		n := copy(r.buf, r.buf[r.start:r.end])
		r.scan -= r.start
		r.start, r.end = 0, n
	}
	room := len(r.buf) - r.end
	if room > 0 && (room >= len(r.buf)/8 || len(r.buf) >= r.t.maxBuf) {
		return
	}
	size := 2 * len(r.buf)
	if size > r.t.maxBuf {
		size = r.t.maxBuf
	}
	nb := make([]byte, size)
	copy(nb, r.buf[:r.end])
	if r.pooled != nil {
		r.t.bufs.Put(r.pooled)
		r.pooled = nil
	}
	r.buf = nb
}

// releaseBuf gives the buffer back while the reader is idle, so that quiet files hold none.
func (r *reader) releaseBuf() {
	if r.pooled != nil {
		r.t.bufs.Put(r.pooled)
	}
	r.buf, r.pooled = nil, nil
	r.start, r.end, r.scan = 0, 0, 0
}
