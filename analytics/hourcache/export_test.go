package hourcache

// CountingDB counts the statements sent through it (for the package's external tests).
type CountingDB = countingDB

// Queries is how many statements were sent.
func (c *countingDB) Queries() int64 { return c.queries.Load() }
