"""Recipe to trained adapter: the training mix, profiles, render, the Axolotl check, launch, train, the tiny model, strategies."""
