"""The toolkit's command-line tools (click): stylegan2-train, stylegan2-generate."""
