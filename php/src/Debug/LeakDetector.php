<?php

declare(strict_types=1);

namespace Courser\Debug;

/**
 * Tells which route leaves state behind in a long-lived worker.
 *
 * A bridge calls begin() before each request and end($route) after the
 * response is sent and the framework reset. Three modes, chosen with the
 * COURSER_LEAK_CHECK environment variable (set it in `server.env`):
 *
 *  - `memory` (the default; safe in production): the change of
 *    memory_get_usage() across each request is added up per route, after a
 *    few warm-up requests of that route. When a route's total growth passes
 *    1 MiB, then 2, 4, 8 MiB and so on, one line goes to STDERR (which the
 *    server logs with the worker's pid) naming the route, the growth, the
 *    requests and the growth per request. Cost: two memory_get_usage()
 *    calls and an array update per request.
 *  - `full` (development): after every request the worker takes a snapshot
 *    of the static properties of every loaded user class, the global
 *    variables and whatever the bridge's probes report (for Laravel, the
 *    container's shared instances), and compares it with the snapshot taken
 *    after the previous request. From the second request of a route on
 *    (the first is its warm-up: lazy singletons and caches), every property,
 *    global or instance that was added, replaced, or grew past the largest
 *    size it ever had (so state that comes and goes is not reported) is
 *    logged with the route and the memory delta. Sizes count the array
 *    entries and object properties reachable from a value, three levels
 *    deep and 10,000 at most.
 *    Costs milliseconds per request.
 *  - `off`.
 *
 * COURSER_LEAK_IGNORE is a comma-separated list of class or global name
 * prefixes to leave out of `full` reports (for caches known to be bounded).
 *
 * The detector reports; it never changes the application's state.
 */
final class LeakDetector
{
    public const OFF = 'off';
    public const MEMORY = 'memory';
    public const FULL = 'full';

    /** Requests of a route that are not counted in `memory` mode. */
    public const DEFAULT_WARMUP = 3;

    /** The first growth reported in `memory` mode; each report doubles it. */
    public const DEFAULT_THRESHOLD = 1024 * 1024;

    /** Routes tracked at most; later ones are counted under "(other routes)". */
    public const MAX_ROUTES = 500;

    /** Findings written per request at most. */
    private const MAX_FINDINGS = 10;

    /** Array elements / object properties visited per value when weighing it. */
    private const WEIGH_BUDGET = 10000;

    /**
     * How deep values are weighed: a static array (depth 0), a singleton's
     * array property (1) and its entries (2) count; the transient state deep
     * inside an application graph does not.
     */
    private const WEIGH_DEPTH = 3;

    private const SUPERGLOBALS = ['GLOBALS', '_GET', '_POST', '_COOKIE', '_FILES', '_SERVER', '_REQUEST', '_ENV', '_SESSION', 'argv', 'argc'];

    /** @var array<string, array{requests: int, growth: int, next: int}> */
    private array $routes = [];

    /** @var array<string, callable(): array<string, mixed>> */
    private array $probes = [];

    /** @var list<string> */
    private array $ignore = [];

    /** @var array<string, array{0: string, 1: int}>|null the state after the previous request (full mode) */
    private ?array $snapshot = null;

    /** @var array<string, int> the highest weight each name has had (full mode) */
    private array $highs = [];

    /** @var array<class-string, list<\ReflectionProperty>> static properties declared by each class */
    private array $staticProperties = [];

    private int $memoryBefore = 0;

    /** @var list<string> the lines written so far (newest last, at most 100) */
    private array $reports = [];

    /**
     * @param resource|null $log where reports go (STDERR when null)
     */
    public function __construct(
        private readonly string $mode = self::MEMORY,
        private $log = null,
        private readonly int $warmup = self::DEFAULT_WARMUP,
        private readonly int $threshold = self::DEFAULT_THRESHOLD,
    ) {
        if (!in_array($mode, [self::OFF, self::MEMORY, self::FULL], true)) {
            throw new \InvalidArgumentException(sprintf(
                'Unknown leak-check mode "%s": use "off", "memory" or "full" (COURSER_LEAK_CHECK).',
                $mode,
            ));
        }
        if ($warmup < 0 || $threshold < 1) {
            throw new \InvalidArgumentException('The warm-up must be 0 or more requests and the threshold 1 byte or more.');
        }
    }

    /**
     * The detector configured by COURSER_LEAK_CHECK (default `memory`) and COURSER_LEAK_IGNORE.
     */
    public static function fromEnvironment(): self
    {
        $mode = getenv('COURSER_LEAK_CHECK');
        $mode = $mode === false || $mode === '' ? self::MEMORY : strtolower(trim($mode));
        if (in_array($mode, ['0', 'false', 'no'], true)) {
            $mode = self::OFF;
        } elseif (in_array($mode, ['1', 'true', 'yes', 'dev'], true)) {
            $mode = self::FULL;
        }
        $detector = new self($mode);
        $ignore = getenv('COURSER_LEAK_IGNORE');
        if ($ignore !== false && $ignore !== '') {
            foreach (explode(',', $ignore) as $prefix) {
                $detector->ignore(trim($prefix));
            }
        }

        return $detector;
    }

    public function mode(): string
    {
        return $this->mode;
    }

    /**
     * Leaves names starting with $prefix (a class, `Class::$property`, `$global`, or a
     * probe's full name such as `container instance "request"`) out of `full` reports.
     */
    public function ignore(string $prefix): void
    {
        if ($prefix !== '') {
            $this->ignore[] = ltrim($prefix, '\\');
        }
    }

    /**
     * Adds a source of named values to the `full` snapshot, e.g. a
     * container's shared instances: fn () => ['container instance "auth"' => $object].
     *
     * @param callable(): array<string, mixed> $probe
     */
    public function addProbe(string $name, callable $probe): void
    {
        $this->probes[$name] = $probe;
    }

    /**
     * Call before a request.
     */
    public function begin(): void
    {
        if ($this->mode === self::OFF) {
            return;
        }
        $this->memoryBefore = memory_get_usage();
        if ($this->mode === self::FULL && $this->snapshot === null) {
            $this->snapshot = $this->takeSnapshot();
        }
    }

    /**
     * Call after the response was sent and the framework reset.
     *
     * @param string $route a route pattern with its method ("GET /hello/{name}"), not the raw path,
     *                      so that requests of one route are counted together
     *
     * @return list<string> what was reported for this request (empty for none)
     */
    public function end(string $route): array
    {
        if ($this->mode === self::OFF) {
            return [];
        }
        $memory = memory_get_usage();
        $delta = $memory - $this->memoryBefore;
        if (!isset($this->routes[$route]) && count($this->routes) >= self::MAX_ROUTES) {
            $route = '(other routes)';
        }
        $stats = $this->routes[$route] ?? ['requests' => 0, 'growth' => 0, 'next' => $this->threshold];
        $stats['requests']++;
        $lines = [];

        if ($this->mode === self::FULL) {
            $before = $this->snapshot ?? [];
            $after = $this->takeSnapshot();
            $this->snapshot = $after;
            $findings = $this->compare($before, $after);
            if ($stats['requests'] > 1) {
                if ($findings !== []) {
                    $more = count($findings) - self::MAX_FINDINGS;
                    $text = implode('; ', array_slice($findings, 0, self::MAX_FINDINGS));
                    if ($more > 0) {
                        $text .= sprintf('; and %d more', $more);
                    }
                    $lines[] = sprintf(
                        'courser leak-check: %s (request %d of this route) left state behind: %s; memory %s (now %s)',
                        $route,
                        $stats['requests'],
                        $text,
                        self::signedBytes($delta),
                        self::bytes($memory),
                    );
                }
            }
        }

        if ($stats['requests'] > $this->warmup) {
            $stats['growth'] += $delta;
            if ($stats['growth'] >= $stats['next']) {
                $counted = $stats['requests'] - $this->warmup;
                $lines[] = sprintf(
                    'courser leak-check: route %s has grown this worker\'s memory by %s over %d requests (%s per request); the worker uses %s.%s',
                    $route,
                    self::bytes($stats['growth']),
                    $counted,
                    self::bytes(intdiv($stats['growth'], max(1, $counted))),
                    self::bytes($memory),
                    $this->mode === self::MEMORY ? ' Set COURSER_LEAK_CHECK=full in development to see what it keeps.' : '',
                );
                while ($stats['next'] <= $stats['growth']) {
                    $stats['next'] *= 2;
                }
            }
        }
        $this->routes[$route] = $stats;

        foreach ($lines as $line) {
            $this->write($line);
        }

        return $lines;
    }

    /**
     * Requests and memory growth (bytes, after the warm-up) per route.
     *
     * @return array<string, array{requests: int, growth: int}>
     */
    public function stats(): array
    {
        return array_map(static fn (array $s): array => ['requests' => $s['requests'], 'growth' => $s['growth']], $this->routes);
    }

    /**
     * The lines reported so far (the last 100).
     *
     * @return list<string>
     */
    public function reports(): array
    {
        return $this->reports;
    }

    /**
     * @return array<string, array{0: string, 1: int}> name => [description, weight]
     */
    private function takeSnapshot(): array
    {
        $snapshot = [];
        foreach (get_declared_classes() as $class) {
            if (!isset($this->staticProperties[$class])) {
                $this->staticProperties[$class] = $this->staticPropertiesOf($class);
            }
            foreach ($this->staticProperties[$class] as $property) {
                if (!$property->isInitialized()) {
                    continue;
                }
                $snapshot['static ' . $class . '::$' . $property->getName()] = self::describe($property->getValue());
            }
        }
        foreach ($GLOBALS as $name => $value) {
            if (!in_array($name, self::SUPERGLOBALS, true)) {
                $snapshot['global $' . $name] = self::describe($value);
            }
        }
        foreach ($this->probes as $probe) {
            foreach ($probe() as $name => $value) {
                $snapshot[$name] = self::describe($value);
            }
        }

        return $snapshot;
    }

    /**
     * @param class-string $class
     *
     * @return list<\ReflectionProperty>
     */
    private function staticPropertiesOf(string $class): array
    {
        if ($this->ignored($class)) {
            return [];
        }
        $reflection = new \ReflectionClass($class);
        $file = $reflection->getFileName();
        // PHP's own classes, and the SDK's (this directory's parent is php/src).
        if ($file === false || str_starts_with($file, dirname(__DIR__) . DIRECTORY_SEPARATOR)) {
            return [];
        }
        $properties = [];
        foreach ($reflection->getProperties(\ReflectionProperty::IS_STATIC) as $property) {
            if ($property->getDeclaringClass()->getName() === $class
                && !$this->ignored($class . '::$' . $property->getName())) {
                $property->setAccessible(true);
                $properties[] = $property;
            }
        }

        return $properties;
    }

    /**
     * @param array<string, array{0: string, 1: int}> $before
     * @param array<string, array{0: string, 1: int}> $after
     *
     * @return list<string>
     */
    private function compare(array $before, array $after): array
    {
        $findings = [];
        foreach ($after as $name => [$description, $weight]) {
            if ($this->ignored($name) || $this->ignored(self::subject($name))) {
                continue;
            }
            if (!isset($before[$name])) {
                $this->highs[$name] = $weight;
                // A class loaded during this request starts with its declared defaults; only report real values.
                if (!str_starts_with($name, 'static ') || $weight > 0) {
                    $findings[] = sprintf('%s was added (%s)', $name, $description);
                }
                continue;
            }
            [$oldDescription, $oldWeight] = $before[$name];
            $high = $this->highs[$name] ?? $oldWeight;
            if ($weight > $high) {
                // Only a new high counts: state that comes and goes with requests is not a leak.
                $this->highs[$name] = $weight;
                $findings[] = sprintf('%s grew from %d to %d entries', $name, $oldWeight, $weight);
            } elseif ($description !== $oldDescription && $weight === $oldWeight) {
                $findings[] = sprintf('%s changed from %s to %s', $name, $oldDescription, $description);
            }
        }

        return $findings;
    }

    private function ignored(string $name): bool
    {
        foreach ($this->ignore as $prefix) {
            // A prefix ends at a name boundary: "$app" leaves out "$app" and "$app[...]", not "$apple".
            if (str_starts_with($name, $prefix)
                && (strlen($name) === strlen($prefix) || str_ends_with($prefix, '\\') || !preg_match('/^[A-Za-z0-9_\x80-\xff]/', substr($name, strlen($prefix), 1)))) {
                return true;
            }
        }

        return false;
    }

    /** "static Foo::$bar" → "Foo::$bar", "global $x" → "$x". */
    private static function subject(string $name): string
    {
        $space = strpos($name, ' ');

        return $space === false ? $name : substr($name, $space + 1);
    }

    /**
     * A short description and a weight (elements reachable, bounded) of a value.
     *
     * @return array{0: string, 1: int}
     */
    private static function describe(mixed $value): array
    {
        if (is_array($value)) {
            $budget = self::WEIGH_BUDGET;
            $seen = [];

            return [sprintf('an array of %d', count($value)), self::weigh($value, $budget, $seen)];
        }
        if (is_object($value)) {
            $budget = self::WEIGH_BUDGET;
            $seen = [];

            return [sprintf('%s #%d', get_class($value), spl_object_id($value)), self::weigh($value, $budget, $seen)];
        }
        if (is_string($value)) {
            return [strlen($value) > 40 ? sprintf('a string of %d bytes', strlen($value)) : var_export($value, true), 0];
        }

        return [var_export($value, true), 0];
    }

    /**
     * Counts the array elements and object properties reachable from $value
     * down to WEIGH_DEPTH levels, visiting each object once and at most $budget
     * entries in all.
     *
     * @param array<int, true> $seen
     */
    private static function weigh(mixed $value, int &$budget, array &$seen, int $depth = 0): int
    {
        if ($budget <= 0 || $depth > self::WEIGH_DEPTH) {
            return 0;
        }
        if (is_object($value)) {
            $id = spl_object_id($value);
            // A detector's own records grow by design; they are not the app's state.
            if (isset($seen[$id]) || $value instanceof \Closure || $value instanceof self) {
                return 0;
            }
            $seen[$id] = true;
            $value = (array) $value;
        }
        if (!is_array($value)) {
            return 0;
        }
        $weight = 0;
        foreach ($value as $item) {
            if (--$budget <= 0) {
                break;
            }
            $weight += 1 + self::weigh($item, $budget, $seen, $depth + 1);
        }

        return $weight;
    }

    private function write(string $line): void
    {
        $this->reports[] = $line;
        if (count($this->reports) > 100) {
            array_shift($this->reports);
        }
        $log = $this->log ?? (defined('STDERR') ? STDERR : null);
        if (is_resource($log)) {
            fwrite($log, $line . "\n");
        }
    }

    private static function bytes(int $bytes): string
    {
        $abs = abs($bytes);
        if ($abs >= 1024 * 1024) {
            return sprintf('%.1f MiB', $bytes / (1024 * 1024));
        }
        if ($abs >= 1024) {
            return sprintf('%.1f KiB', $bytes / 1024);
        }

        return sprintf('%d B', $bytes);
    }

    private static function signedBytes(int $bytes): string
    {
        return ($bytes >= 0 ? '+' : '') . self::bytes($bytes);
    }
}
