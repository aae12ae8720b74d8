package v1alpha1

// AuthSpec is where the gateway and analytics find the keys that verify callers' tokens:
// device keys and one of an OIDC issuer or local user keys, or insecureNoAuth alone.
// +kubebuilder:validation:XValidation:rule="(has(self.insecureNoAuth) && self.insecureNoAuth) || has(self.deviceKeysSecretRef)",message="deviceKeysSecretRef is required unless insecureNoAuth is true"
// +kubebuilder:validation:XValidation:rule="(has(self.insecureNoAuth) && self.insecureNoAuth) || has(self.users)",message="users is required unless insecureNoAuth is true"
// +kubebuilder:validation:XValidation:rule="!(has(self.insecureNoAuth) && self.insecureNoAuth) || (!has(self.deviceKeysSecretRef) && !has(self.users))",message="insecureNoAuth cannot be combined with deviceKeysSecretRef or users"
type AuthSpec struct {
	// DeviceKeysSecretRef names the Secret holding the verification keys of device tokens:
	// every key of the Secret named "<kid>.pub" is a PKIX PEM Ed25519 public key whose key
	// id is <kid> (what `fleetingest token keygen` writes). Several keys may be present at
	// once, so keys rotate without downtime. The gateway mounts the whole Secret read-only
	// at /etc/fleetingest/auth/device. Required unless insecureNoAuth is true.
	// +optional
	DeviceKeysSecretRef *SecretRef `json:"deviceKeysSecretRef,omitempty"`

	// Users says how analytics verifies user tokens: the platform's OIDC issuer, or the
	// keys of a local issuer. Required unless insecureNoAuth is true.
	// +optional
	Users *UsersAuthSpec `json:"users,omitempty"`

	// InsecureNoAuth true asks no token of anyone: any caller that reaches the gateway can
	// post readings for any device, and any caller that reaches analytics can read
	// everything and change mappings. For experiments only; the operator reports it in the
	// AuthEnabled condition and with a Warning Event. It excludes deviceKeysSecretRef and
	// users. Default false.
	// +optional
	InsecureNoAuth bool `json:"insecureNoAuth,omitempty"`
}

// UsersAuthSpec is where analytics finds the keys that verify user tokens: exactly one of
// oidc and keysSecretRef.
// +kubebuilder:validation:XValidation:rule="has(self.oidc) != has(self.keysSecretRef)",message="exactly one of oidc and keysSecretRef is required"
type UsersAuthSpec struct {
	// OIDC is the platform's OpenID Connect issuer, whose tokens users present.
	// +optional
	OIDC *OIDCSpec `json:"oidc,omitempty"`

	// KeysSecretRef names the Secret holding a local issuer's verification keys, in the
	// same "<kid>.pub" form as the device keys (tokens minted with `fleetingest token
	// user`). Analytics mounts the whole Secret read-only at /etc/fleetingest/auth/user.
	// +optional
	KeysSecretRef *SecretRef `json:"keysSecretRef,omitempty"`
}

// OIDCSpec is an OpenID Connect issuer of user tokens.
type OIDCSpec struct {
	// IssuerURL is the issuer exactly as its tokens' "iss" claim names it, e.g.
	// "https://idp.example.com/realms/fleet". Analytics fetches its discovery document and
	// keys from there, so it must be an https:// URL (plain http is refused, also for
	// tests), without query or fragment.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.matches('^https://[^/?#\\\\s]+(/[^?#\\\\s]*)?$')",message="must be an https:// URL without query or fragment"
	IssuerURL string `json:"issuerURL"`

	// Audience is the client id the issuer's tokens must name in their "aud" claim. Default
	// "fleetingest".
	// +optional
	// +kubebuilder:default=fleetingest
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Audience string `json:"audience,omitempty"`

	// RolesClaim is the claim holding a user's roles (viewer, admin): a name, or a dotted
	// path such as "realm_access.roles". Default "roles".
	// +optional
	// +kubebuilder:default=roles
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	RolesClaim string `json:"rolesClaim,omitempty"`
}

// SecretRef names a whole Secret in the FleetIngestion's namespace.
type SecretRef struct {
	// Name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}
