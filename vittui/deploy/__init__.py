"""After training: predict on images (`predict`), export a trained model for deployment (`export`) with a
model card (`modelcard`). These need torch; the dashboard never imports them (comparing runs is
`vittui.runs.compare`)."""
