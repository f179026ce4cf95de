"""The Textual dashboard. Stands on `runs`, `hardware`, `recipe`, `planning` and the model catalogue only:
the UI process never imports torch. Build it with `vittui.ui.app.create_app`."""
