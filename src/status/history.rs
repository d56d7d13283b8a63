//! The dashboard's sparklines: requests and errors per second of each
//! service over the last few minutes, one point per reading. Bounded: a
//! service keeps at most [`POINTS`] points, and one that has had none for
//! that long is forgotten.

use std::collections::{HashMap, VecDeque};

/// Readings kept per service: five minutes at one a second.
pub const POINTS: usize = 300;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Point {
    pub requests_per_s: f32,
    pub errors_per_s: f32,
}

#[derive(Debug, Default)]
struct Series {
    /// The reading of the newest point.
    last: u64,
    points: VecDeque<Point>,
}

#[derive(Debug, Default)]
pub struct History {
    /// Readings so far.
    readings: u64,
    series: HashMap<String, Series>,
}

impl History {
    /// Adds one reading: a point for each service in it. A service missing
    /// from some readings (HAProxy restarting) gets zeros for them.
    pub fn push<'a>(&mut self, points: impl IntoIterator<Item = (&'a str, Point)>) {
        self.readings += 1;
        let now = self.readings;
        for (service, point) in points {
            let series = self.series.entry(service.to_owned()).or_default();
            let missed = (now - series.last).saturating_sub(1).min(POINTS as u64);
            if series.last > 0 {
                series.points.extend((0..missed).map(|_| Point::default()));
            }
            series.points.push_back(point);
            series.last = now;
            while series.points.len() > POINTS {
                series.points.pop_front();
            }
        }
        self.series.retain(|_, s| now - s.last < POINTS as u64);
    }

    /// A service's points, oldest first, up to the latest reading (zeros
    /// since it was last seen); `None` for a service never seen or forgotten.
    pub fn series(&self, service: &str) -> Option<Vec<Point>> {
        let series = self.series.get(service)?;
        let missed = (self.readings - series.last) as usize;
        let mut points: Vec<Point> = series.points.iter().copied().collect();
        points.extend(std::iter::repeat_n(Point::default(), missed));
        let excess = points.len().saturating_sub(POINTS);
        points.drain(..excess);
        Some(points)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(requests: f32) -> Point {
        Point {
            requests_per_s: requests,
            errors_per_s: 0.0,
        }
    }

    #[test]
    fn keeps_the_last_points_of_each_service() {
        let mut history = History::default();
        for i in 0..POINTS + 50 {
            history.push([("web", point(i as f32))]);
        }
        let web = history.series("web").unwrap();
        assert_eq!(web.len(), POINTS);
        assert_eq!(web[0], point(50.0));
        assert_eq!(web[POINTS - 1], point((POINTS + 49) as f32));
        assert_eq!(history.series("nope"), None);
    }

    #[test]
    fn a_service_missing_from_readings_reads_zero_then_is_forgotten() {
        let mut history = History::default();
        history.push([("web", point(1.0)), ("api", point(2.0))]);
        history.push([("web", point(1.0))]);
        history.push([("web", point(1.0)), ("api", point(3.0))]);
        assert_eq!(history.series("api").unwrap(), vec![point(2.0), point(0.0), point(3.0)]);
        history.push([("web", point(1.0))]);
        assert_eq!(history.series("api").unwrap().last(), Some(&point(0.0)));
        for _ in 0..POINTS {
            history.push([("web", point(1.0))]);
        }
        assert_eq!(history.series("api"), None, "forgotten once out of the window");
        assert_eq!(history.series.len(), 1);
    }
}
