package ingester

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetingest/fleetingest/api/placement"
)

// ShardMapKey is the key of the fleet's shard map in its shard-map bucket.
const ShardMapKey = "map"

// ShardMapBucket is the KV bucket that holds the fleet's versioned shard map
// (placement.ShardMap, JSON) under ShardMapKey: `fi_<ns>_<fleet>_shardmap`.
func (t Topology) ShardMapBucket() string {
	return fmt.Sprintf("fi_%s_%s_shardmap", Sanitize(t.Namespace), Sanitize(t.Fleet))
}

// ShardMapBucketConfig is the desired shard-map bucket: the value holds every version, so one
// revision is kept.
func ShardMapBucketConfig(t Topology, o StreamOptions) jetstream.KeyValueConfig {
	return kvConfig(t.ShardMapBucket(), "shard map", t, o)
}

// ensureShardMap creates or repairs the shard-map bucket and writes the first map, for
// t.Shards shards, when the bucket holds none. A map that exists is left as it is: it
// changes only by GrowShardMap.
func ensureShardMap(ctx context.Context, js jetstream.JetStream, t Topology, o StreamOptions) (BucketState, error) {
	want := ShardMapBucketConfig(t, o)
	created, err := ensureBucket(ctx, js, want)
	if err != nil {
		return BucketState{}, err
	}
	kv, err := js.KeyValue(ctx, want.Bucket)
	if err != nil {
		return BucketState{}, fmt.Errorf("opening bucket %s: %w", want.Bucket, err)
	}
	m, err := placement.NewShardMap(t.Shards)
	if err != nil {
		return BucketState{}, err
	}
	data, err := m.Marshal()
	if err != nil {
		return BucketState{}, err
	}
	if _, err := kv.Create(ctx, ShardMapKey, data); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return BucketState{}, fmt.Errorf("writing the first shard map: %w", err)
	}
	return BucketState{Name: want.Bucket, Created: created}, nil
}

// ReadShardMap reads the fleet's shard map and its revision.
func ReadShardMap(ctx context.Context, js jetstream.JetStream, t Topology) (*placement.ShardMap, uint64, error) {
	kv, err := js.KeyValue(ctx, t.ShardMapBucket())
	if err != nil {
		return nil, 0, fmt.Errorf("opening shard-map bucket %s: %w", t.ShardMapBucket(), err)
	}
	e, err := kv.Get(ctx, ShardMapKey)
	if err != nil {
		return nil, 0, fmt.Errorf("reading the shard map: %w", err)
	}
	m, err := placement.ParseShardMap(e.Value())
	if err != nil {
		return nil, 0, err
	}
	return m, e.Revision(), nil
}

// GrowShardMap appends a version of shards shards that takes effect lead after it is written
// (placement.Grow), compare-and-set on the map's revision, and returns the new map. The lead
// gives every component that watches the map time to see the version before any reading is
// placed by it; the new shards' streams must exist first (EnsureStreams).
func GrowShardMap(ctx context.Context, js jetstream.JetStream, t Topology, shards int, lead time.Duration) (*placement.ShardMap, error) {
	kv, err := js.KeyValue(ctx, t.ShardMapBucket())
	if err != nil {
		return nil, fmt.Errorf("opening shard-map bucket %s: %w", t.ShardMapBucket(), err)
	}
	e, err := kv.Get(ctx, ShardMapKey)
	if err != nil {
		return nil, fmt.Errorf("reading the shard map: %w", err)
	}
	m, err := placement.ParseShardMap(e.Value())
	if err != nil {
		return nil, err
	}
	grown, err := placement.Grow(m, shards, time.Now().Add(lead))
	if err != nil {
		return nil, err
	}
	data, err := grown.Marshal()
	if err != nil {
		return nil, err
	}
	if _, err := kv.Update(ctx, ShardMapKey, data, e.Revision()); err != nil {
		return nil, fmt.Errorf("writing the grown shard map (written meanwhile? read it again): %w", err)
	}
	return grown, nil
}

// ShardMaps follows the fleet's shard map: a copy kept current by watching its key.
type ShardMaps struct {
	kv  jetstream.KeyValue
	log *slog.Logger

	cur      atomic.Pointer[placement.ShardMap]
	ready    chan struct{}
	once     sync.Once
	watchers sync.Map // chan struct{} → struct{}: told of every new map
}

// OpenShardMaps binds to the fleet's shard-map bucket; Run keeps the copy current.
func OpenShardMaps(ctx context.Context, js jetstream.JetStream, t Topology, log *slog.Logger) (*ShardMaps, error) {
	kv, err := js.KeyValue(ctx, t.ShardMapBucket())
	if err != nil {
		return nil, fmt.Errorf("opening shard-map bucket %s: %w", t.ShardMapBucket(), err)
	}
	if log == nil {
		log = slog.Default()
	}
	return &ShardMaps{kv: kv, log: log, ready: make(chan struct{})}, nil
}

// Run watches the map until ctx ends, starting the watch again when it breaks.
func (w *ShardMaps) Run(ctx context.Context) error {
	for {
		err := w.watch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		w.log.Warn("shard-map watch ended, restarting", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func (w *ShardMaps) watch(ctx context.Context) error {
	kw, err := w.kv.Watch(ctx, ShardMapKey)
	if err != nil {
		return fmt.Errorf("watching the shard map: %w", err)
	}
	defer func() { _ = kw.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-kw.Updates():
			if !ok {
				return errors.New("watcher closed")
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			m, err := placement.ParseShardMap(e.Value())
			if err != nil {
				w.log.Error("ignoring an invalid shard map", "revision", e.Revision(), "err", err)
				continue
			}
			if old := w.cur.Load(); old != nil && len(m.Versions) < len(old.Versions) {
				w.log.Error("ignoring a shard map with fewer versions than the one held", "revision", e.Revision())
				continue
			}
			w.cur.Store(m)
			w.once.Do(func() { close(w.ready) })
			w.log.Info("shard map", "versions", len(m.Versions), "shards", m.Shards(), "revision", e.Revision())
			w.watchers.Range(func(k, _ any) bool {
				select {
				case k.(chan struct{}) <- struct{}{}:
				default:
				}
				return true
			})
		}
	}
}

// Current is the map held; nil before the first one arrived.
func (w *ShardMaps) Current() *placement.ShardMap { return w.cur.Load() }

// Ready reports whether a map has arrived.
func (w *ShardMaps) Ready() bool { return w.cur.Load() != nil }

// WaitReady waits until a map has arrived or ctx ends.
func (w *ShardMaps) WaitReady(ctx context.Context) error {
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for the shard map: %w", ctx.Err())
	}
}

// Changes returns a channel told (without blocking, so changes may coalesce) of every new map,
// and what stops telling it.
func (w *ShardMaps) Changes() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	w.watchers.Store(ch, struct{}{})
	return ch, func() { w.watchers.Delete(ch) }
}
