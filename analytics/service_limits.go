package analytics

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"connectrpc.com/connect"
)

// DefaultMaxRequestBytes bounds a request's body, after decompression: analytics requests
// are ids and a few parameters.
const DefaultMaxRequestBytes = 64 << 10

// maxErrorBytes bounds an error message, so that no answer echoes much of its request.
const maxErrorBytes = 512

// limitBodies bounds what a request body may cost before anything decodes it. A REST body
// (under /v1/) is read here within max bytes after decompression (gzip; others 415; over is
// 413) and handed on whole. Connect, gRPC and gRPC-Web bodies are bounded on the wire here,
// and per message after decompression by the handler (ResourceExhausted).
func limitBodies(maxBytes int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Body == nil || r.Body == http.NoBody:
		case !strings.HasPrefix(r.URL.Path, "/v1/"):
			r.Body = http.MaxBytesReader(w, r.Body, maxBytes)
		default:
			body, status, msg := readRESTBody(w, r, maxBytes)
			if status != 0 {
				writeRESTError(w, status, msg)
				return
			}
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
			r.Header.Del("Content-Encoding")
			r.Header.Set("Content-Length", strconv.Itoa(len(body)))
		}
		next.ServeHTTP(w, r)
	})
}

// readRESTBody reads a REST request's body within maxBytes after decompression, or says
// which HTTP status refuses it.
func readRESTBody(w http.ResponseWriter, r *http.Request, maxBytes int64) (body []byte, status int, msg string) {
	var in io.Reader = http.MaxBytesReader(w, r.Body, maxBytes)
	switch enc := strings.ToLower(r.Header.Get("Content-Encoding")); enc {
	case "", "identity":
		if r.ContentLength > maxBytes {
			return nil, http.StatusRequestEntityTooLarge, "request body exceeds " + strconv.FormatInt(maxBytes, 10) + " bytes"
		}
	case "gzip":
		zr, err := gzip.NewReader(in)
		if err != nil {
			return nil, http.StatusBadRequest, "the body is not gzip"
		}
		defer func() { _ = zr.Close() }()
		in = http.MaxBytesReader(w, zr, maxBytes)
	default:
		return nil, http.StatusUnsupportedMediaType, "unsupported Content-Encoding: send gzip or none"
	}
	body, err := io.ReadAll(in)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, http.StatusRequestEntityTooLarge, "request body exceeds " + strconv.FormatInt(maxBytes, 10) + " bytes (after decompression)"
	case err != nil:
		return nil, http.StatusBadRequest, "reading the request body failed"
	}
	return body, 0, ""
}

// writeRESTError answers in the google.rpc.Status shape the REST paths use.
func writeRESTError(w http.ResponseWriter, status int, msg string) {
	code := connect.CodeInvalidArgument
	if status == http.StatusRequestEntityTooLarge {
		code = connect.CodeResourceExhausted
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(`{"code":` + strconv.Itoa(int(code)) + `,"message":` + strconv.Quote(msg) + `,"details":[]}`))
}

// cutErrors bounds the message of every error a handler returns, on every protocol.
func cutErrors() connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			res, err := next(ctx, req)
			var ce *connect.Error
			if err != nil && errors.As(err, &ce) && len(ce.Message()) > maxErrorBytes {
				cut := connect.NewError(ce.Code(), errors.New(truncate(ce.Message(), maxErrorBytes)))
				for k, v := range ce.Meta() {
					cut.Meta()[k] = v
				}
				return res, cut
			}
			return res, err
		}
	}
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
