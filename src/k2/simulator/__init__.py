"""A venue-faithful exchange simulator: Binance, Kraken and Coinbase wire formats on loopback."""

from k2.simulator.faults import FAULTS, Faults, parse_faults
from k2.simulator.simulator import Simulator

__all__ = ["FAULTS", "Faults", "Simulator", "parse_faults"]
