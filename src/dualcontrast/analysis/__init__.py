"""Analysis of a trained run: clustering, subtomogram averages, figures, RELION exports."""
