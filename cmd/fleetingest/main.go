// Command fleetingest is the single binary of the system; its subcommands run each component.
package main

import (
	"os"

	"github.com/fleetingest/fleetingest/cmd/fleetingest/app"
)

func main() {
	os.Exit(app.Main(os.Args[1:]))
}
