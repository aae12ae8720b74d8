// Package attribution is the rule that charges a meter's AC to the vehicles that drew from
// it: in each hour, a vehicle's share is the meter's AC in proportion to the vehicle's part of
// the DC attributed to the meter (exactly the meter's AC with one vehicle); an hour with AC but
// no DC is split equally among the vehicles mapped to the meter then. Shares are whole mWh,
// rounded half away from zero, so every answer sums them exactly and alike.
package attribution

import "math/bits"

// Share is a vehicle's part of a meter's ac in one hour: ac × dc / total, rounded half away
// from zero; 0 when total is 0 (see Equal). All three are non-negative mWh, dc ≤ total.
// The fleet alert statement computes the same as div(2·ac·dc + total, 2·total).
func Share(ac, dc, total int64) int64 {
	if total <= 0 || ac <= 0 || dc <= 0 {
		return 0
	}
	if dc == total {
		return ac
	}
	// (2·ac·dc + total) / (2·total) in 128 bits: ac and dc are each below 2^63.
	hi, lo := bits.Mul64(uint64(ac), uint64(dc))
	hi, lo = hi<<1|lo>>63, lo<<1
	var carry uint64
	lo, carry = bits.Add64(lo, uint64(total), 0)
	hi += carry
	q, _ := bits.Div64(hi, lo, 2*uint64(total))
	return int64(q)
}

// Equal is one of n vehicles' part of a meter's ac in an hour with no DC: ac / n, rounded
// half away from zero (n < 1 counts as one).
func Equal(ac int64, n int) int64 {
	if n <= 1 {
		return ac
	}
	return (2*ac + int64(n)) / (2 * int64(n))
}
