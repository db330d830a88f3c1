"""GradStyle: gradual residuals alignment for StyleGAN inversion and editing (plugin for the toolkit)."""
