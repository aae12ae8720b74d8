package auth

import (
	"sync"
	"time"
)

// DefaultMaxCacheEntries is the default bound of a verifier's token cache.
const DefaultMaxCacheEntries = 100_000

// cacheEntry is a verified token. It is never modified once cached.
type cacheEntry[C any] struct {
	claims C
	jti    string
	expiry time.Time
	// generation of the key set the token was verified with.
	generation uint64
}

// tokenCache maps a token to its verified claims, so a token's signature is checked once,
// not once per request. It holds at most max entries and only entries verified with the
// newest key set generation it has seen: a change of keys empties it.
type tokenCache[C any] struct {
	max        int
	mu         sync.RWMutex
	generation uint64
	entries    map[string]*cacheEntry[C]
}

func newTokenCache[C any](bound int) *tokenCache[C] {
	return &tokenCache[C]{max: bound, entries: make(map[string]*cacheEntry[C])}
}

// get returns the entry of token if it was verified with key set generation gen. The caller
// still checks expiry and revocation.
func (c *tokenCache[C]) get(token string, gen uint64) *cacheEntry[C] {
	c.mu.RLock()
	e := c.entries[token]
	c.mu.RUnlock()
	if e == nil || e.generation != gen {
		return nil
	}
	return e
}

// put caches a verified token. An entry of a newer key set generation empties the cache
// first; one of an older generation (verified while the keys changed) is not cached.
func (c *tokenCache[C]) put(token string, e *cacheEntry[C], now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case e.generation > c.generation:
		clear(c.entries)
		c.generation = e.generation
	case e.generation < c.generation:
		return
	}
	if _, ok := c.entries[token]; !ok && len(c.entries) >= c.max {
		c.evict(now)
	}
	c.entries[token] = e
}

// evict makes room: it drops every expired entry and, if that is not enough, a tenth of the
// cache (map order is random, so a random tenth). c.mu is held.
func (c *tokenCache[C]) evict(now time.Time) {
	for token, e := range c.entries {
		if !now.Before(e.expiry) {
			delete(c.entries, token)
		}
	}
	target := c.max - c.max/10
	if target >= c.max {
		target = c.max - 1
	}
	for token := range c.entries {
		if len(c.entries) <= target {
			break
		}
		delete(c.entries, token)
	}
}

// len returns the number of cached tokens.
func (c *tokenCache[C]) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
