"""The 接诉即办 ticket domain: models, state machine, deadlines, dispatch, warnings, metrics."""
