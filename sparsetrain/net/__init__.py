"""The network: what the collectives put on the wire (:mod:`~sparsetrain.net.cost`, with the α-β
time model) and a real bandwidth-limited link on one machine (:mod:`~sparsetrain.net.shaping`)."""
