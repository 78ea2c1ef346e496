package main

import (
	"log/slog"

	"github.com/lowkeyhq/lowkey/internal/cli"
	"github.com/lowkeyhq/lowkey/internal/demo"
)

type demoCmd struct {
	Once    bool `help:"Stop after showing the result."`
	Verbose bool `short:"v" help:"Show the hub's and companion's logs."`
}

func (c *demoCmd) Run(o *cli.IO) error {
	log := slog.New(slog.NewTextHandler(o.Err, &slog.HandlerOptions{Level: slog.LevelWarn + 4}))
	if c.Verbose {
		log = logger(o.Err)
	}
	ctx, stop := signalContext()
	defer stop()
	return demo.Run(ctx, demo.Options{Once: c.Once, Version: version, Out: o.Out, Logger: log})
}
