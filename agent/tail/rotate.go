package tail

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/skiff-logs/skiff/agent/positions"
)

// sibling is a rotated sibling of a file: <target>.<suffix>, or <target>.<suffix>.gz.
type sibling struct {
	name  string
	key   positions.Key // the reader's key: the file's own, or the open reader's that has its content
	fp    uint64
	fpOK  bool
	gz    bool
	size  int64 // bytes (decompressed, for a gzip file: from its trailer; -1 unknown)
	mtime time.Time
	// entry is the positions entry of the content, when known: the file's own, or, for a
	// gzip file, the one of the uncompressed file it was made from.
	entry positions.Entry
	known bool
}

// rotatedSiblings lists the regular files <target>.<suffix> and <target>.<suffix>.gz (the
// kubelet's compressed rotated files), not .tmp ones (a compression in progress), sorted by
// suffix: the kubelet's suffixes are timestamps, so that is rotation order. When both <name>
// and <name>.gz exist (compression just finished), <name> is listed, or <name>.gz when <name>
// is gone by the time it is looked at. A gzip file whose content
// an open reader already reads (it was compressed and removed under the reader) gets that
// reader's key. Called with t.mu held.
func (t *Tailer) rotatedSiblings(target string) []sibling {
	dir, names := siblingNames(target)
	plain := make(map[string]bool)
	for _, n := range names {
		if !isGz(n) {
			plain[n] = true
		}
	}
	stem := func(n string) string { return strings.TrimSuffix(n, gzSuffix) }
	slices.SortStableFunc(names, func(a, b string) int { return strings.Compare(stem(a), stem(b)) })
	var out []sibling
	for _, n := range names {
		if isGz(n) && plain[stem(n)] {
			continue
		}
		s, ok := t.statSibling(filepath.Join(dir, n), target)
		if !ok && !isGz(n) {
			// Gone since the listing: compressed just now, most likely. Without its .gz the
			// file would be missing from the list, and the files rotated after it with it.
			s, ok = t.statSibling(filepath.Join(dir, n+gzSuffix), target)
		}
		if ok {
			out = append(out, s)
		}
	}
	return out
}

// siblingNames returns the directory of target and the names <base>.<suffix> in it, except
// .tmp ones (a compression in progress), in name order.
func siblingNames(target string) (dir string, names []string) {
	dir, base := filepath.Split(target)
	ents, err := os.ReadDir(filepath.Clean(dir))
	if err != nil {
		return dir, nil
	}
	for _, de := range ents {
		if n := de.Name(); strings.HasPrefix(n, base+".") && !strings.HasSuffix(n, ".tmp") {
			names = append(names, n)
		}
	}
	return dir, names
}

// statSibling describes the rotated file name of target. Called with t.mu held.
func (t *Tailer) statSibling(name, target string) (sibling, bool) {
	k, fi, ok := statRegular(name)
	if !ok {
		return sibling{}, false
	}
	s := sibling{name: name, key: k, mtime: fi.ModTime(), size: fi.Size(), gz: isGz(name)}
	f, err := os.Open(name)
	if err != nil {
		return sibling{}, false
	}
	defer f.Close()
	if !s.gz {
		s.fp, s.fpOK, _ = fingerprint(f)
		if e, ok := t.cfg.Positions.Get(k); ok && s.fpOK && e.Fingerprint == s.fp {
			s.entry, s.known = e, true
		}
		return s, true
	}
	s.size = gzSize(f, fi.Size())
	if s.fp, err = gzFingerprint(f); err != nil {
		// Listed (it is read, and its damage reported, in its turn), but matched to nothing.
		return s, true
	}
	s.fpOK = true
	for _, r := range t.readers {
		if r.origin == target && !r.isGz && readerFP(r) == s.fp {
			s.key = r.key
			return s, true
		}
	}
	if e, ok := t.cfg.Positions.Get(k); ok && e.Fingerprint == s.fp {
		s.entry, s.known = e, true
	} else if e, ok := t.cfg.Positions.Lookup(target, s.fp, k); ok {
		s.entry, s.known = e, true
		if r, open := t.readers[e.Key]; open && !r.isGz {
			s.key = e.Key // its reader has not begun yet
		}
	}
	return s, true
}

// readerFP returns the fingerprint of an open reader's content: its generation's, or, before
// it began, its file's now (0 when not yet stable).
func readerFP(r *reader) uint64 {
	if fp := r.idFP.Load(); fp != 0 {
		return fp
	}
	fp, ok, _ := fingerprint(r.f)
	if !ok {
		return 0
	}
	return fp
}

// catchUpAfterRestart handles a restart after the kubelet rotated path while skiff was not
// reading it. The known entries of path for files no longer at path are looked for among the
// rotated siblings (plain or compressed) of the target they had; from the oldest one found on,
// the siblings are read in order, each after the previous one, from their saved position (or
// from 0 for those rotated away before skiff ever saw them). A known file that was not read to
// its end and is found nowhere is reported lost (see lost). It returns the last reader started,
// which the current file of path must wait for, or nil. Called with t.mu held.
func (t *Tailer) catchUpAfterRestart(ctx context.Context, handle handleFunc, path string, cur positions.Key, known []positions.Entry) *reader {
	byKey := make(map[positions.Key]positions.Entry)
	var targets []string
	curFP, curOK := fileFingerprint(path)
	for _, e := range known {
		if e.Key == cur && curOK && curFP == e.Fingerprint {
			continue // the file still at path (an entry of cur with another fingerprint is
			// for a file whose inode the current one reuses)
		}
		byKey[e.Key] = e
		targets = append(targets, entryTarget(e))
	}
	slices.Sort(targets)
	var last *reader
	found := make(map[positions.Key]bool)
	for _, tgt := range slices.Compact(targets) {
		sibs := t.rotatedSiblings(tgt)
		started := false
		for i, s := range sibs {
			if !s.known {
				continue
			}
			found[s.entry.Key] = true
			if _, ok := byKey[s.entry.Key]; ok && !started {
				last = t.chain(ctx, handle, path, tgt, sibs, i, cur, last)
				started = true
			}
		}
		for _, s := range sibs {
			// An entry of the same content under another key is not lost either.
			for k, e := range byKey {
				if s.fpOK && e.Fingerprint == s.fp && entryTarget(e) == tgt {
					found[k] = true
				}
			}
		}
	}
	for k, e := range byKey {
		if !found[k] && e.Size > e.Offset {
			t.lost(path, entryTarget(e), e.Size-e.Offset, "it was removed before skiff read it to its end")
			t.cfg.Positions.Remove(k, e.Fingerprint)
		}
	}
	return last
}

func entryTarget(e positions.Entry) string {
	if e.Target != "" {
		return e.Target
	}
	return e.Path
}

// lost counts n bytes of file (of the discovered path) that skiff will never read in
// metrics.LostBytes and logs it once.
func (t *Tailer) lost(path, file string, n int64, why string) {
	if n <= 0 {
		return
	}
	t.m.lost.Add(float64(n))
	t.log.Warn("log data lost: "+why, "path", path, "file", file, "lost_bytes", n)
}

// catchUpRotated runs when the path of cur now leads to a new file (next): if the kubelet
// rotated more than once since the last scan, the files in between are only found among the
// siblings of cur's file. They are read, in order, after cur. It returns the reader the new
// file must wait for. Called with t.mu held.
func (t *Tailer) catchUpRotated(ctx context.Context, handle handleFunc, cur *reader, next positions.Key) *reader {
	sibs := t.rotatedSiblings(cur.origin)
	for i, s := range sibs {
		if s.key == cur.key {
			return t.chain(ctx, handle, cur.path, cur.origin, sibs, i, next, cur)
		}
	}
	return cur // deleted, not rotated
}

// chain starts readers for sibs[ref] and the siblings after it, each after the one before
// (starting with last, if any), skipping the file skip. A sibling newer than sibs[ref] that
// the positions do not know is read from 0; one more than a minute older is taken for an
// older file of a numbering scheme (app.log.1, app.log.2) and left alone. Already open files
// join the chain as they are; a compressed file whose content was read to its end is left. A
// sibling removed before it could be opened is looked for compressed, or reported lost. It
// returns the last reader of the chain.
func (t *Tailer) chain(ctx context.Context, handle handleFunc, path, tgt string, sibs []sibling, ref int, skip positions.Key, last *reader) *reader {
	refTime := sibs[ref].mtime
	for i := ref; i < len(sibs); i++ {
		s := sibs[i]
		if s.key == skip {
			continue
		}
		if r, open := t.readers[s.key]; open {
			last = r
			continue
		}
		if t.siblingRetired(s) {
			continue
		}
		if s.gz && s.known && gzRead(s) {
			continue
		}
		if i > ref && !s.known && s.mtime.Before(refTime.Add(-time.Minute)) {
			continue
		}
		var after <-chan struct{}
		if last != nil {
			after = last.drained
		}
		if r := t.start(ctx, handle, path, s.name, tgt, s.key, startNew, after, true); r != nil {
			last = r
			t.log.Info("reading a rotated file skiff had not finished", "path", path, "file", s.name, "known", s.known)
			continue
		}
		if _, err := os.Lstat(s.name); err == nil {
			continue // cannot open it now; start logged why
		}
		if !s.gz {
			if gz, ok := t.statSibling(s.name+gzSuffix, tgt); ok {
				// Compressed between listing and opening: read the compressed file instead.
				sibs[i] = gz
				i--
				continue
			}
		}
		n := s.size
		if s.known {
			n = s.entry.Size - s.entry.Offset
			if !s.gz && s.size > s.entry.Size {
				n = s.size - s.entry.Offset
			}
		}
		t.lost(path, s.name, n, "a rotated file was removed before skiff could open it")
		if s.known {
			t.cfg.Positions.Remove(s.entry.Key, s.entry.Fingerprint)
		}
	}
	return last
}

// siblingRetired reports whether s, or the file a compressed s was made from, was closed
// after it was read to its end (its last acknowledgements may still be in flight).
func (t *Tailer) siblingRetired(s sibling) bool {
	if !s.gz {
		return t.isRetired(s.key, s.name)
	}
	if rf, ok := t.retired[s.key]; ok && s.fpOK && rf.fp == s.fp {
		return true
	}
	if s.known {
		if rf, ok := t.retired[s.entry.Key]; ok && rf.fp == s.fp {
			return true
		}
	}
	return false
}

// fileFingerprint returns the fingerprint of the file at name, and whether it is stable.
func fileFingerprint(name string) (uint64, bool) {
	f, err := os.Open(name)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	fp, ok, _ := fingerprint(f)
	return fp, ok
}

// gzRead reports whether the known gzip sibling s was read to its end already: to the size its
// own entry recorded at its end (or damage), or to the size its trailer declares.
func gzRead(s sibling) bool {
	if s.entry.Key == s.key && s.entry.Size > 0 && s.entry.Offset >= s.entry.Size {
		return true
	}
	return s.size >= 0 && s.entry.Offset >= s.size
}
