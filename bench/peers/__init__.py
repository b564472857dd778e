"""The tools people already trust, run the same way in every comparison (``tools``: s5cmd, rclone),
and a real SeaweedFS to run them against (``seaweed``)."""
