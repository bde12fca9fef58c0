"""An example Django project using ``watchers_bot.contrib.django``."""
