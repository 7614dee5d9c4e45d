"""`rolloutctl report`: one self-contained HTML page over an eval's or a run's results.

`load` reads the results (an eval results JSON with its samples, or a run's output folder,
local or in object storage) into `Rollout`s; `plots` draws the summary charts as inline SVG;
`payload` turns the rollouts into the compact data the page embeds; `page` puts the static
assets (`assets/`) and the data together into one file that needs no network to be viewed.
"""
