package main

import (
	"log/slog"
	"os"

	"github.com/lowkeyhq/lowkey/internal/demo"
)

func runDemo(args []string) error {
	fs := newFlags("demo", "lowkey demo [--once]")
	once := fs.Bool("once", false, "stop after showing the result")
	verbose := fs.Bool("v", false, "show the hub's and companion's logs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn + 4}))
	if *verbose {
		log = logger()
	}
	ctx, stop := signalContext()
	defer stop()
	return demo.Run(ctx, demo.Options{Once: *once, Version: version, Out: os.Stdout, Logger: log})
}
