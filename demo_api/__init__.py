"""What the demo service's apps share: the API's conventions and the failures on demand."""
