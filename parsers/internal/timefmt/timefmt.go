// Package timefmt parses the RFC 3339 timestamps that the kubelet (CRI) and docker's json-file
// driver write, without allocating and several times faster than time.Parse.
package timefmt

import "time"

// Parse parses b of the exact form
//
//	YYYY-MM-DDTHH:MM:SS[.F](Z|+hh:mm|-hh:mm)
//
// where F is 1 to 9 digits, the date must exist (leap years are honoured), hours are 0–23,
// minutes and seconds 0–59 (no leap second), and an offset's hours 0–23 and minutes 0–59.
// Whatever Parse accepts, time.Parse(time.RFC3339Nano, …) accepts too and yields the same
// instant. The result is always in UTC: the instant is kept, the writer's zone offset is not
// (keeping it would allocate a *time.Location per line). ok is false for anything else.
func Parse(b []byte) (t time.Time, ok bool) {
	if len(b) < len("2006-01-02T15:04:05Z") ||
		b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' {
		return time.Time{}, false
	}
	y1, ok1 := num2(b, 0)
	y2, ok2 := num2(b, 2)
	month, ok3 := num2(b, 5)
	day, ok4 := num2(b, 8)
	hour, ok5 := num2(b, 11)
	minute, ok6 := num2(b, 14)
	sec, ok7 := num2(b, 17)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7) {
		return time.Time{}, false
	}
	year := y1*100 + y2
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}

	rest := b[19:]
	var nsec int64
	if rest[0] == '.' {
		n := 1
		for n < len(rest) && n <= 10 && rest[n]-'0' <= 9 {
			nsec = nsec*10 + int64(rest[n]-'0')
			n++
		}
		digits := n - 1
		if digits < 1 || digits > 9 {
			return time.Time{}, false
		}
		nsec *= pow10[9-digits]
		rest = rest[n:]
	}

	var zone int64
	switch {
	case len(rest) == 1 && rest[0] == 'Z':
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		zh, okh := num2(rest, 1)
		zm, okm := num2(rest, 4)
		if !okh || !okm || zh > 23 || zm > 59 {
			return time.Time{}, false
		}
		zone = int64(zh*3600 + zm*60)
		if rest[0] == '-' {
			zone = -zone
		}
	default:
		return time.Time{}, false
	}

	unix := daysFromCivil(year, month, day)*86400 +
		int64(hour*3600+minute*60+sec) - zone
	return time.Unix(unix, nsec).UTC(), true
}

var pow10 = [10]int64{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9}

// num2 reads the two decimal digits at b[i:i+2]; the caller guarantees they exist.
func num2(b []byte, i int) (int, bool) {
	hi, lo := b[i]-'0', b[i+1]-'0'
	return int(hi)*10 + int(lo), hi <= 9 && lo <= 9
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil returns the number of days from 1970-01-01 to the given proleptic Gregorian date
// (Howard Hinnant's algorithm). The year is shifted by 4800 (twelve 400-year eras) so that every
// division below works on non-negative numbers for years 0–9999.
func daysFromCivil(year, month, day int) int64 {
	const shift = 4800
	y := int64(year) + shift
	if month <= 2 {
		y--
	}
	era := y / 400
	yoe := y - era*400
	mp := int64((month + 9) % 12) // March is 0
	doy := (153*mp+2)/5 + int64(day) - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468 - shift/400*146097
}
