package telemetry

import "math"

// Energy is held as integer milliwatt-hours from the decoder onwards, so that every sum is
// exact whatever its order; the HTTP surface speaks kWh.
const (
	// MWhPerKWh is 1 kWh in mWh.
	MWhPerKWh = 1_000_000
	// MaxMWh is the largest energy one reading may carry: 10,000 kWh in one reporting
	// interval is implausible. An int64 sum of readings of at most this much overflows only
	// past 922 million readings of one device in one sum: more than a reading a second for
	// 29 years, beyond any retention a fleet may set.
	MaxMWh = 10_000 * MWhPerKWh
)

// KWh converts mWh to kWh for an answer. Exact sums convert to the nearest float of their
// decimal value: 18,000,000 mWh is 18.
func KWh(mwh int64) float64 { return float64(mwh) / MWhPerKWh }

// MWhFromKWh converts a float kWh (a stream message of the previous version) to mWh,
// rounding half away from zero.
func MWhFromKWh(kwh float64) int64 {
	return int64(math.Round(kwh * MWhPerKWh))
}

// energyText is what parseMWh makes of a JSON number's text.
type energyText uint8

const (
	energyOK       energyText = iota
	energyNegative            // below zero (-0 is zero)
	energyTooLarge            // above MaxMWh
)

// exponent splits a JSON number's text (without its sign) into the length of its mantissa
// and its exponent (0 without one; kept within ±1,000,000, far past any value that counts).
func exponent(b []byte) (mantissa, exp int) {
	mantissa = len(b)
	for i, c := range b {
		if c == 'e' || c == 'E' {
			mantissa = i
			break
		}
	}
	if mantissa == len(b) {
		return mantissa, 0
	}
	e := b[mantissa+1:]
	neg := len(e) > 0 && e[0] == '-'
	if len(e) > 0 && (e[0] == '-' || e[0] == '+') {
		e = e[1:]
	}
	for _, c := range e {
		if exp < 1_000_000 {
			exp = exp*10 + int(c-'0')
		}
	}
	if neg {
		exp = -exp
	}
	return mantissa, exp
}

// parseMWh converts a JSON number's text, in kWh, to mWh from its decimal digits (never
// through a float): digits beyond the sixth decimal are rounded half away from zero, so
// "0.30000000000000004" is 300,000 mWh and "0.0000005" is 1. The text has the JSON number
// grammar (the caller scanned it).
func parseMWh(b []byte) (int64, energyText) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	end, exp := exponent(b)
	// The value is digits × 10^scale; mWh are value × 10^6.
	var digits [40]byte
	n, scale, nonzero := 0, 6+exp, false
	frac := false
	for _, c := range b[:end] {
		if c == '.' {
			frac = true
			continue
		}
		if frac {
			scale--
		}
		if c != '0' {
			nonzero = true
		}
		if n == 0 && c == '0' {
			continue // leading zeros
		}
		if n < len(digits) {
			digits[n] = c - '0'
			n++
		} else {
			// Past 40 significant digits, a further digit only moves the point: the value is
			// then far above MaxMWh, or the digit lies below the one that decides rounding.
			scale++
		}
	}
	if neg && nonzero {
		return 0, energyNegative
	}
	if !nonzero {
		return 0, energyOK
	}
	if n+scale > 11 { // more than 11 integer digits of mWh: above 10^11 > MaxMWh
		return 0, energyTooLarge
	}
	keep := n + scale // digits that stay left of the decimal point of the mWh value
	var v int64
	for i := 0; i < keep && i < n; i++ {
		v = v*10 + int64(digits[i])
	}
	for i := n; i < keep; i++ {
		v *= 10
	}
	if keep >= 0 && keep < n && digits[keep] >= 5 { // the first digit dropped decides
		v++
	}
	if v > MaxMWh {
		return 0, energyTooLarge
	}
	return v, energyOK
}
