// Package gzipfile appends crash-safe gzip members to files: the file output, the fallback spool
// and the dead-letter store all write through it.
package gzipfile

// File is a gzip file open for appending. Every WriteMember adds one complete gzip member and
// fsyncs, so a crash leaves a file whose complete members all read back (a reader stops cleanly at
// a torn last member). Not safe for concurrent use.
// PLACEHOLDER: being written by the outputs/gzipfile owner.
type File struct{}

// Open opens (creating it and its directories if needed) path for appending.
func Open(path string) (*File, error) { panic("gzipfile.Open: not written yet") }

// WriteMember compresses p as one gzip member, appends it and fsyncs the file. When it returns
// nil, p is durable.
func (f *File) WriteMember(p []byte) error { panic("gzipfile.WriteMember: not written yet") }

// Size is the file's size in bytes after the last successful WriteMember.
func (f *File) Size() int64 { panic("gzipfile.Size: not written yet") }

// Close closes the file. Safe to call twice.
func (f *File) Close() error { panic("gzipfile.Close: not written yet") }
