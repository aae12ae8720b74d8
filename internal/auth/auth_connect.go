package auth

import (
	"context"
	"errors"
	"net/http"

	"connectrpc.com/connect"
)

// userKey is the context key of a call's UserClaims.
type userKey struct{}

// UserFromContext returns the claims the Connect interceptor verified.
func UserFromContext(ctx context.Context) (UserClaims, bool) {
	c, ok := ctx.Value(userKey{}).(UserClaims)
	return c, ok
}

// connectInterceptor authenticates the calls a Connect handler serves.
type connectInterceptor struct {
	users    UserVerifier
	required func(procedure string) Role
}

// NewConnectInterceptor returns a handler interceptor that verifies the bearer token of
// every unary and streaming call (server reflection included) with users and requires the
// role required(procedure) returns; "" means the procedure needs no token. A nil required
// asks viewer of every procedure.
//
// A missing or bad token is CodeUnauthenticated and a valid one without the role
// CodePermissionDenied, both with a WWW-Authenticate error header (RFC 6750); an
// unreachable issuer is CodeUnavailable.
// The claims are in the handler's context (UserFromContext). Client calls pass through.
func NewConnectInterceptor(users UserVerifier, required func(procedure string) Role) connect.Interceptor {
	if required == nil {
		required = func(string) Role { return RoleViewer }
	}
	return &connectInterceptor{users: users, required: required}
}

func (i *connectInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		ctx, err := i.authenticate(ctx, req.Spec().Procedure, req.Header())
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (i *connectInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i *connectInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := i.authenticate(ctx, conn.Spec().Procedure, conn.RequestHeader())
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

// authenticate verifies the call's token and role and returns the context with its claims.
func (i *connectInterceptor) authenticate(ctx context.Context, procedure string, h http.Header) (context.Context, error) {
	role := i.required(procedure)
	if role == "" {
		return ctx, nil
	}
	token, aerr := bearerFromHeader(h)
	if aerr != nil {
		return ctx, connectError(aerr)
	}
	claims, err := i.users.VerifyUser(ctx, token)
	if err != nil {
		if !errors.As(err, &aerr) {
			aerr = newError(ReasonMalformed, "token refused: %s", echo(err.Error()))
		}
		return ctx, connectError(aerr)
	}
	if !claims.Has(role) {
		return ctx, connectError(newError(ReasonMissingRole, "%s needs the %s role", procedure, role))
	}
	return context.WithValue(ctx, userKey{}, claims), nil
}

// connectError turns a refusal into the Connect error it answers with.
func connectError(err *Error) *connect.Error {
	code := connect.CodeUnauthenticated
	switch err.HTTPStatus() {
	case http.StatusForbidden:
		code = connect.CodePermissionDenied
	case http.StatusServiceUnavailable:
		return connect.NewError(connect.CodeUnavailable, err)
	}
	ce := connect.NewError(code, err)
	ce.Meta().Set("WWW-Authenticate", Challenge(err))
	return ce
}
