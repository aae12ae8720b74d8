// Package lograte keeps a burst of one log line from flooding the log: a slog.Handler that
// passes the first record of a logger, level and message, drops the same line again within
// an interval, and counts what it dropped on the next one it passes ("suppressed": n).
package lograte

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultInterval is how long a line is held back after it was written.
const DefaultInterval = 10 * time.Second

// maxLines bounds the lines remembered; past it the memory starts afresh.
const maxLines = 4096

type key struct {
	scope string // the attributes and groups of the logger
	level slog.Level
	msg   string
}

type line struct {
	last       time.Time
	suppressed int
}

// state is shared by a handler and those WithAttrs and WithGroup derive from it.
type state struct {
	interval time.Duration
	now      func() time.Time
	mu       sync.Mutex
	lines    map[key]*line
}

// Handler rate-limits repeated lines before next.
type Handler struct {
	next  slog.Handler
	scope string
	s     *state
}

// New returns a handler that writes to next at most one record of a level and message per
// interval (DefaultInterval when 0).
func New(next slog.Handler, interval time.Duration) *Handler {
	return newWithClock(next, interval, time.Now)
}

func newWithClock(next slog.Handler, interval time.Duration, now func() time.Time) *Handler {
	if interval <= 0 {
		interval = DefaultInterval
	}
	return &Handler{next: next, s: &state{interval: interval, now: now, lines: map[key]*line{}}}
}

// Enabled reports whether next takes records of level.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// Handle passes r on unless the same line passed within the interval.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	k := key{h.scope, r.Level, r.Message}
	now := h.s.now()
	h.s.mu.Lock()
	l := h.s.lines[k]
	if l != nil && now.Sub(l.last) < h.s.interval {
		l.suppressed++
		h.s.mu.Unlock()
		return nil
	}
	if l == nil {
		if len(h.s.lines) >= maxLines {
			clear(h.s.lines)
		}
		l = &line{}
		h.s.lines[k] = l
	}
	suppressed := l.suppressed
	l.last, l.suppressed = now, 0
	h.s.mu.Unlock()
	if suppressed > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", suppressed))
	}
	return h.next.Handle(ctx, r)
}

// WithAttrs returns a handler whose records carry attrs; its lines are its own.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	scope := h.scope
	for _, a := range attrs {
		scope += " " + a.String()
	}
	return &Handler{next: h.next.WithAttrs(attrs), scope: scope, s: h.s}
}

// WithGroup returns a handler whose attributes go in group name; its lines are its own.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name), scope: h.scope + " " + name + ".", s: h.s}
}
