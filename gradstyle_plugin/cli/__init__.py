"""GradStyle command-line tools (click): gradstyle-directions."""
