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

// sibling is a rotated sibling of a file: <target>.<suffix>.
type sibling struct {
	name  string
	key   positions.Key
	mtime time.Time
}

// rotatedSiblings lists the regular files <target>.<suffix>, except .gz and .tmp ones (the
// kubelet compresses old files through a .tmp file), sorted by name: the kubelet's suffixes
// are timestamps, so name order is rotation order.
func rotatedSiblings(target string) []sibling {
	dir, base := filepath.Split(target)
	ents, err := os.ReadDir(filepath.Clean(dir))
	if err != nil {
		return nil
	}
	var out []sibling
	for _, de := range ents {
		n := de.Name()
		if !strings.HasPrefix(n, base+".") || strings.HasSuffix(n, ".gz") || strings.HasSuffix(n, ".tmp") {
			continue
		}
		name := filepath.Join(dir, n)
		k, fi, ok := statRegular(name)
		if !ok {
			continue
		}
		out = append(out, sibling{name: name, key: k, mtime: fi.ModTime()})
	}
	return out // ReadDir sorts by name
}

// catchUpAfterRestart handles a restart after the kubelet rotated path while skiff was not
// reading it. The known entries of path for files no longer at path are looked for among the
// rotated siblings of the target they had; from the oldest one found on, the siblings are read
// in order, each after the previous one, from their saved position (or from 0 for those rotated
// away before skiff ever saw them). It returns the last reader started, which the current file
// of path must wait for, or nil. Called with t.mu held.
func (t *Tailer) catchUpAfterRestart(ctx context.Context, handle handleFunc, path string, cur positions.Key, known []positions.Entry) *reader {
	byKey := make(map[positions.Key]positions.Entry)
	var targets []string
	for _, e := range known {
		if e.Key == cur {
			continue
		}
		byKey[e.Key] = e
		tgt := e.Target
		if tgt == "" {
			tgt = e.Path
		}
		targets = append(targets, tgt)
	}
	slices.Sort(targets)
	var last *reader
	for _, tgt := range slices.Compact(targets) {
		sibs := rotatedSiblings(tgt)
		for i, s := range sibs {
			if e, ok := byKey[s.key]; ok && sameFingerprint(s.name, e.Fingerprint) {
				last = t.chain(ctx, handle, path, tgt, sibs, i, cur, last)
				break
			}
		}
	}
	return last
}

// catchUpRotated runs when the path of cur now leads to a new file (next): if the kubelet
// rotated more than once since the last scan, the files in between are only found among the
// siblings of cur's file. They are read, in order, after cur. It returns the reader the new
// file must wait for. Called with t.mu held.
func (t *Tailer) catchUpRotated(ctx context.Context, handle handleFunc, cur *reader, next positions.Key) *reader {
	sibs := rotatedSiblings(cur.origin)
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
// join the chain as they are. It returns the last reader of the chain.
func (t *Tailer) chain(ctx context.Context, handle handleFunc, path, tgt string, sibs []sibling, ref int, skip positions.Key, last *reader) *reader {
	refTime := sibs[ref].mtime
	for i, s := range sibs[ref:] {
		if s.key == skip {
			continue
		}
		if r, open := t.readers[s.key]; open {
			last = r
			continue
		}
		if t.isRetired(s.key, s.name) {
			continue
		}
		e, known := t.cfg.Positions.Get(s.key)
		known = known && sameFingerprint(s.name, e.Fingerprint)
		if i > 0 && !known && s.mtime.Before(refTime.Add(-time.Minute)) {
			continue
		}
		var after <-chan struct{}
		if last != nil {
			after = last.drained
		}
		if r := t.start(ctx, handle, path, s.name, tgt, s.key, startNew, after, true); r != nil {
			last = r
			t.log.Info("reading a rotated file skiff had not finished", "path", path, "file", s.name, "known", known)
		}
	}
	return last
}

func sameFingerprint(name string, want uint64) bool {
	f, err := os.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	fp, ok, _ := fingerprint(f)
	return ok && fp == want
}
