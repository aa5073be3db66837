<?php

declare(strict_types=1);

namespace Courser\Tests\Debug;

use Courser\Debug\LeakDetector;
use PHPUnit\Framework\TestCase;

final class LeakyFixture
{
    /** @var list<string> */
    public static array $items = [];

    public static ?object $current = null;

    public static int $transient = 0;
}

final class LeakDetectorTest extends TestCase
{
    /** @var list<string> memory kept alive by the "memory" tests */
    private array $kept = [];

    protected function setUp(): void
    {
        LeakyFixture::$items = [];
        LeakyFixture::$current = null;
        LeakyFixture::$transient = 0;
    }

    private static function detector(string $mode, int $warmup = LeakDetector::DEFAULT_WARMUP, int $threshold = LeakDetector::DEFAULT_THRESHOLD): LeakDetector
    {
        $detector = new LeakDetector($mode, fopen('php://memory', 'w+'), $warmup, $threshold);
        $detector->ignore('PHPUnit\\');
        $detector->ignore('SebastianBergmann\\');

        return $detector;
    }

    /**
     * @param callable(): void $request
     *
     * @return list<string>
     */
    private static function request(LeakDetector $detector, string $route, callable $request): array
    {
        $detector->begin();
        $request();

        return $detector->end($route);
    }

    public function testFullModeNamesAGrowingStaticFromTheSecondRequestOfItsRoute(): void
    {
        $detector = self::detector(LeakDetector::FULL);
        $leak = static function (): void {
            LeakyFixture::$items[] = str_repeat('x', 100);
        };

        self::assertSame([], self::request($detector, 'GET /leak', $leak), 'the first request of a route is its warm-up');
        $lines = self::request($detector, 'GET /leak', $leak);
        self::assertCount(1, $lines);
        self::assertStringStartsWith('courser leak-check: GET /leak (request 2 of this route) left state behind: ', $lines[0]);
        self::assertStringContainsString('static Courser\Tests\Debug\LeakyFixture::$items grew from 1 to 2 entries', $lines[0]);
        self::assertMatchesRegularExpression('/; memory \+[0-9.]+ (B|KiB) \(now [0-9.]+ MiB\)$/', $lines[0]);
        self::assertSame($lines, $detector->reports());
    }

    public function testFullModeReportsAReplacedObjectAndANewGlobal(): void
    {
        $detector = self::detector(LeakDetector::FULL);
        $login = static function (): void {
            LeakyFixture::$current = new \stdClass();
        };
        self::request($detector, 'GET /login', $login);
        $lines = self::request($detector, 'GET /login', static function () use ($login): void {
            $login();
            $GLOBALS['courser_test_global'] = ['user' => 'alice'];
        });
        unset($GLOBALS['courser_test_global']);
        self::assertCount(1, $lines);
        self::assertMatchesRegularExpression('/static Courser\\\\Tests\\\\Debug\\\\LeakyFixture::\$current changed from stdClass #\d+ to stdClass #\d+/', $lines[0]);
        self::assertStringContainsString('global $courser_test_global was added (an array of 1)', $lines[0]);
    }

    public function testStateThatComesAndGoesIsNotALeak(): void
    {
        $detector = self::detector(LeakDetector::FULL);
        $detector->ignore('Courser\Tests\Debug\LeakyFixture::$transient');
        $up = static function (): void {
            LeakyFixture::$items = ['a', 'b', 'c'];
        };
        $down = static function (): void {
            LeakyFixture::$items = [];
        };
        $reports = [];
        for ($i = 0; $i < 5; $i++) {
            $reports[] = self::request($detector, 'GET /up', $up);
            $reports[] = self::request($detector, 'GET /down', $down);
        }
        // /up's second request reaches the same high as its first: nothing new.
        self::assertSame([], array_merge(...$reports));
    }

    public function testProbesAndIgnoresAreHonoured(): void
    {
        $detector = self::detector(LeakDetector::FULL);
        $instances = ['auth' => 'Guard #1'];
        $detector->addProbe('container', static function () use (&$instances): array {
            $found = [];
            foreach ($instances as $id => $value) {
                $found['container instance "' . $id . '"'] = $value;
            }

            return $found;
        });
        $detector->ignore('container instance "request"');
        $request = static function () use (&$instances): void {
            $instances['request'] = 'Request #' . random_int(1, PHP_INT_MAX);
        };
        self::request($detector, 'GET /', $request);
        self::assertSame([], self::request($detector, 'GET /', $request));
        $lines = self::request($detector, 'GET /', static function () use (&$instances): void {
            $instances['tenant'] = 'Tenant #7';
        });
        self::assertCount(1, $lines);
        self::assertStringContainsString('container instance "tenant" was added (\'Tenant #7\')', $lines[0]);
    }

    public function testMemoryModeReportsTheRouteEachTimeItsGrowthDoubles(): void
    {
        $detector = self::detector(LeakDetector::MEMORY, 2, 64 * 1024);
        $kept = &$this->kept;
        $leak = static function () use (&$kept): void {
            $kept[] = str_repeat('y', 16 * 1024);
        };
        $lines = [];
        for ($i = 0; $i < 2 + 16; $i++) {
            $lines = array_merge($lines, self::request($detector, 'GET /leak', $leak));
            self::request($detector, 'GET /fine', static function (): void {
                $scratch = str_repeat('z', 64 * 1024);
                unset($scratch);
            });
        }
        // 16 counted requests of 16-20 KiB (the string and its slot): past 64, 128 and 256 KiB, not 512.
        self::assertCount(3, $lines, implode("\n", $lines));
        self::assertMatchesRegularExpression(
            "/^courser leak-check: route GET \\/leak has grown this worker's memory by [0-9.]+ KiB over \\d+ requests \\([12][0-9.]+ KiB per request\\); the worker uses [0-9.]+ MiB\\. Set COURSER_LEAK_CHECK=full in development to see what it keeps\\.$/",
            $lines[0],
        );
        $stats = $detector->stats();
        self::assertSame(18, $stats['GET /leak']['requests']);
        self::assertGreaterThan(16 * 16 * 1024, $stats['GET /leak']['growth']);
        self::assertLessThan(4096, abs($stats['GET /fine']['growth']));
    }

    public function testOffModeDoesNothingAndModesAreValidated(): void
    {
        $detector = self::detector(LeakDetector::OFF);
        self::assertSame([], self::request($detector, 'GET /', static function (): void {
            LeakyFixture::$items[] = 'x';
        }));
        self::assertSame([], $detector->stats());

        $this->expectException(\InvalidArgumentException::class);
        $this->expectExceptionMessage('Unknown leak-check mode "loud": use "off", "memory" or "full" (COURSER_LEAK_CHECK).');
        new LeakDetector('loud');
    }

    public function testTheEnvironmentChoosesTheMode(): void
    {
        foreach (['' => LeakDetector::MEMORY, 'full' => LeakDetector::FULL, 'dev' => LeakDetector::FULL, 'OFF' => LeakDetector::OFF, '0' => LeakDetector::OFF] as $value => $mode) {
            putenv('COURSER_LEAK_CHECK=' . $value);
            self::assertSame($mode, LeakDetector::fromEnvironment()->mode(), "COURSER_LEAK_CHECK=$value");
        }
        putenv('COURSER_LEAK_CHECK');
        self::assertSame(LeakDetector::MEMORY, LeakDetector::fromEnvironment()->mode());
    }

    public function testIgnoredNamesEndAtANameBoundary(): void
    {
        $detector = self::detector(LeakDetector::FULL);
        $detector->ignore('$courser_app');
        $request = static function (): void {
            $GLOBALS['courser_app'] = ($GLOBALS['courser_app'] ?? 0) + 1;
            $GLOBALS['courser_apple'] = ($GLOBALS['courser_apple'] ?? 0) + 1;
        };
        self::request($detector, 'GET /', $request);
        $lines = self::request($detector, 'GET /', $request);
        unset($GLOBALS['courser_app'], $GLOBALS['courser_apple']);
        self::assertCount(1, $lines);
        self::assertStringContainsString('global $courser_apple changed from 1 to 2', $lines[0]);
        self::assertStringNotContainsString('global $courser_app changed', $lines[0]);
    }
}
