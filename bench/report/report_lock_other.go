//go:build !unix

package report

// lockDir does not lock where flock is missing: there, benchmark binaries that finish at the
// same moment may lose one another's records.
func lockDir(string) (unlock func() error, err error) {
	return func() error { return nil }, nil
}
