package loadgen

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// The latency histogram counts microseconds in log-linear buckets: values below 2^subBits
// exactly, then 2^subBits buckets per power of two (a relative width of 1/32), up to 2^40 µs.
const (
	subBits    = 5
	subBuckets = 1 << subBits
	maxBits    = 40
	buckets    = subBuckets + (maxBits-subBits)*subBuckets
)

// histogram of latencies, safe for concurrent use without locks.
type histogram struct {
	counts [buckets]atomic.Int64
}

func bucketOf(us uint64) int {
	us = min(us, 1<<maxBits-1)
	if us < subBuckets {
		return int(us)
	}
	shift := bits.Len64(us) - subBits - 1
	return subBuckets + shift*subBuckets + int(us>>shift) - subBuckets
}

// bucketValue is the middle of bucket i, in µs.
func bucketValue(i int) float64 {
	if i < subBuckets {
		return float64(i)
	}
	shift := (i - subBuckets) / subBuckets
	low := uint64(subBuckets+(i-subBuckets)%subBuckets) << shift
	return float64(low) + float64(uint64(1)<<shift)/2
}

func (h *histogram) record(d time.Duration) {
	h.counts[bucketOf(uint64(max(d.Microseconds(), 0)))].Add(1)
}

// percentile is the p-th percentile (0–100) of what was recorded; 0 when nothing was.
func (h *histogram) percentile(p float64) time.Duration {
	if h == nil {
		return 0
	}
	var total int64
	for i := range h.counts {
		total += h.counts[i].Load()
	}
	if total == 0 {
		return 0
	}
	rank := max(int64(math.Ceil(p/100*float64(total))), 1)
	var seen int64
	for i := range h.counts {
		if seen += h.counts[i].Load(); seen >= rank {
			return time.Duration(bucketValue(i) * float64(time.Microsecond))
		}
	}
	return time.Duration(bucketValue(buckets-1) * float64(time.Microsecond))
}
