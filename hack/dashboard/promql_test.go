package main

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// The dashboard's and the alerts' PromQL is read here only far enough to say which series
// each expression selects, with which label matchers, and which labels it groups by: enough
// to hold every name against what the code registers, without Prometheus's own parser (and
// its module) in the build.

// matcher is one label matcher of a selector.
type matcher struct{ label, op, value string }

// selector is one series selector: a metric name and its matchers.
type selector struct {
	name     string
	matchers []matcher
}

// refs is what an expression reads: its selectors, and the labels named by its by, without,
// on, ignoring, group_left and group_right clauses.
type refs struct {
	selectors []selector
	grouping  []string
}

type tokenKind int

const (
	tIdent tokenKind = iota
	tString
	tNumber
	tRange // a range or subquery, [5m] or [$__rate_interval]: no names inside
	tPunct
)

type tok struct {
	kind tokenKind
	text string
}

var (
	aggregators = words("sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio")
	groupings   = words("by without on ignoring group_left group_right")
	keywords    = words("and or unless bool offset atan2")
	identRE     = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*`)
	numberRE    = regexp.MustCompile(`^(\.?\d[0-9a-zA-Z_.]*|\$[a-zA-Z0-9_{}]+)`)
	punctRE     = regexp.MustCompile(`^(=~|!~|!=|==|>=|<=|[(){},=<>+\-*/%^])`)
)

func words(s string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(s) {
		m[w] = true
	}
	return m
}

func tokenize(expr string) ([]tok, error) {
	var ts []tok
	for s := expr; s != ""; {
		switch s[0] {
		case ' ', '\t', '\n':
			s = s[1:]
		case '"', '\'', '`':
			end := closingQuote(s)
			if end < 0 {
				return nil, fmt.Errorf("unterminated string in %q", expr)
			}
			ts = append(ts, tok{tString, s[1:end]})
			s = s[end+1:]
		case '[':
			end := strings.IndexByte(s, ']')
			if end < 0 {
				return nil, fmt.Errorf("unterminated range in %q", expr)
			}
			ts = append(ts, tok{tRange, s[:end+1]})
			s = s[end+1:]
		default:
			var kind tokenKind
			var m string
			if m = identRE.FindString(s); m != "" {
				kind = tIdent
			} else if m = numberRE.FindString(s); m != "" {
				kind = tNumber
			} else if m = punctRE.FindString(s); m != "" {
				kind = tPunct
			} else {
				return nil, fmt.Errorf("unexpected %q in %q", s, expr)
			}
			ts = append(ts, tok{kind, m})
			s = s[len(m):]
		}
	}
	return ts, nil
}

// closingQuote is the index of the quote that ends the string s starts with, or -1.
func closingQuote(s string) int {
	for i := 1; i < len(s); i++ {
		switch {
		case s[i] == '\\' && s[0] != '`':
			i++
		case s[i] == s[0]:
			return i
		}
	}
	return -1
}

func parseRefs(expr string) (refs, error) {
	ts, err := tokenize(expr)
	if err != nil {
		return refs{}, err
	}
	var r refs
	at := func(i int) tok {
		if i < len(ts) {
			return ts[i]
		}
		return tok{kind: tPunct}
	}
	for i := 0; i < len(ts); i++ {
		t := ts[i]
		switch {
		case t.kind == tPunct && t.text == "{":
			return refs{}, fmt.Errorf("a selector without a metric name in %q", expr)
		case t.kind != tIdent:
		case groupings[t.text]:
			if at(i+1).text != "(" {
				continue
			}
			for i += 2; at(i).text != ")"; i++ {
				switch at(i).kind {
				case tIdent:
					r.grouping = append(r.grouping, at(i).text)
				case tPunct:
					if at(i).text != "," {
						return refs{}, fmt.Errorf("unexpected %q among the labels of %s in %q", at(i).text, t.text, expr)
					}
				default:
					return refs{}, fmt.Errorf("unexpected %q among the labels of %s in %q", at(i).text, t.text, expr)
				}
			}
		case keywords[t.text], aggregators[t.text], at(i+1).text == "(":
			// An operator, an aggregation or a function: no series of its own.
		default:
			sel := selector{name: t.text}
			if at(i+1).text == "{" {
				if i, err = parseMatchers(ts, i+2, &sel); err != nil {
					return refs{}, fmt.Errorf("%w in %q", err, expr)
				}
			}
			r.selectors = append(r.selectors, sel)
		}
	}
	return r, nil
}

// parseMatchers reads `label op "value"` pairs from ts[i] to the closing brace, and returns
// the brace's index.
func parseMatchers(ts []tok, i int, sel *selector) (int, error) {
	for ; i < len(ts); i++ {
		if ts[i].text == "}" {
			return i, nil
		}
		if i+2 >= len(ts) || ts[i].kind != tIdent || !slices.Contains([]string{"=", "!=", "=~", "!~"}, ts[i+1].text) || ts[i+2].kind != tString {
			return 0, fmt.Errorf("malformed matcher of %s", sel.name)
		}
		sel.matchers = append(sel.matchers, matcher{label: ts[i].text, op: ts[i+1].text, value: ts[i+2].text})
		i += 2
		if i+1 < len(ts) && ts[i+1].text == "," {
			i++
		}
	}
	return 0, fmt.Errorf("unclosed matchers of %s", sel.name)
}

// series is what one metric name offers an expression: its labels (target labels included)
// and, for the job label, the values it may have.
type series struct {
	labels    map[string]bool
	histogram bool
	jobs      []string
}

// labelValuesRE is a Grafana variable query: the values of one label of a selection.
var labelValuesRE = regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// checkQuery checks a dashboard variable's query: label_values over an expression whose
// series have that label.
func checkQuery(q string, known map[string]series) []error {
	m := labelValuesRE.FindStringSubmatch(q)
	if m == nil {
		return []error{fmt.Errorf("variable query %q is not label_values(selector, label)", q)}
	}
	errs := checkExpr(m[1], known)
	r, err := parseRefs(m[1])
	if err == nil && len(r.selectors) > 0 {
		if s, ok := resolve(r.selectors[0].name, known); ok && !s.labels[m[2]] {
			errs = append(errs, fmt.Errorf("variable query %q: %s has no label %s", q, r.selectors[0].name, m[2]))
		}
	}
	return errs
}

// checkExpr reports every series name expr reads that is not known, every matcher or
// grouping label its series do not have, and every job it selects that no scrape gives.
func checkExpr(expr string, known map[string]series) []error {
	r, err := parseRefs(expr)
	if err != nil {
		return []error{err}
	}
	if len(r.selectors) == 0 {
		return []error{fmt.Errorf("%q selects no series", expr)}
	}
	var errs []error
	all := map[string]bool{}
	for _, sel := range r.selectors {
		s, ok := resolve(sel.name, known)
		if !ok {
			errs = append(errs, fmt.Errorf("%q reads %s, which nothing registers", expr, sel.name))
			continue
		}
		for l := range s.labels {
			all[l] = true
		}
		for _, m := range sel.matchers {
			if !s.labels[m.label] {
				errs = append(errs, fmt.Errorf("%q matches label %s, which %s does not have", expr, m.label, sel.name))
			}
			if m.label == "job" {
				errs = append(errs, checkJob(expr, sel.name, m, s.jobs)...)
			}
		}
	}
	for _, l := range r.grouping {
		if !all[l] {
			errs = append(errs, fmt.Errorf("%q groups by %s, which none of its series has", expr, l))
		}
	}
	return errs
}

func checkJob(expr, name string, m matcher, jobs []string) []error {
	values := []string{m.value}
	if m.op == "=~" {
		values = strings.Split(m.value, "|")
	} else if m.op != "=" {
		return nil
	}
	var errs []error
	for _, v := range values {
		if !slices.Contains(jobs, v) {
			errs = append(errs, fmt.Errorf("%q selects job %q of %s; the scrapes give %v", expr, v, name, jobs))
		}
	}
	return errs
}

// resolve finds a series name, a histogram's _bucket, _sum and _count included.
func resolve(name string, known map[string]series) (series, bool) {
	if s, ok := known[name]; ok {
		return s, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, found := strings.CutSuffix(name, suffix)
		if s, ok := known[base]; found && ok && s.histogram {
			if suffix == "_bucket" {
				s.labels = withLabels(s.labels, "le")
			}
			return s, true
		}
	}
	return series{}, false
}

func withLabels(set map[string]bool, labels ...string) map[string]bool {
	out := map[string]bool{}
	for l := range set {
		out[l] = true
	}
	for _, l := range labels {
		out[l] = true
	}
	return out
}
