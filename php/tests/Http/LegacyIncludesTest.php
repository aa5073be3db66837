<?php

declare(strict_types=1);

namespace Courser\Tests\Http;

use Courser\Http\Legacy\Context;
use Courser\Http\Legacy\Includes;
use Courser\Http\Legacy\ScriptCache;
use PHPUnit\Framework\TestCase;

require_once __DIR__ . '/Psr7Support.php';

/**
 * include_once and require_once in rewritten code (Includes::once()): once
 * per request for rewritten files, once per process for the others.
 */
final class LegacyIncludesTest extends TestCase
{
    private string $dir;

    protected function setUp(): void
    {
        $this->dir = Psr7Support::tempDir();
        mkdir($this->dir . '/cache', 0700);
        mkdir($this->dir . '/app/vendor', 0777, true);
        mkdir($this->dir . '/outside');
        Includes::configure(new ScriptCache($this->dir . '/cache'), [$this->dir . '/app']);
    }

    protected function tearDown(): void
    {
        Context::activate(null);
        Includes::configure(null, []);
        exec('rm -rf ' . escapeshellarg($this->dir));
    }

    public function testARewrittenFileIsIncludedOncePerRequest(): void
    {
        file_put_contents($this->dir . '/app/config.php', "<?php\nreturn 'config';\n");
        $app = (string) realpath($this->dir . '/app');

        Context::activate(new Context());
        $copy = Includes::once('config.php', $app);
        self::assertIsString($copy);
        self::assertStringStartsWith($this->dir . '/cache/', $copy);
        self::assertSame('config', require $copy);
        self::assertSame(Includes::ALREADY_INCLUDED, Includes::once($app . '/./config.php', $app), 'the same file, however it is named');
        self::assertTrue(require Includes::ALREADY_INCLUDED, 'what require_once returns for a file already included');

        Context::activate(new Context());
        self::assertSame($copy, Includes::once($app . '/config.php', $app), 'the next request includes it again');
    }

    public function testAPlainIncludeCountsForALaterIncludeOnce(): void
    {
        file_put_contents($this->dir . '/app/lib.php', "<?php\n");
        $app = (string) realpath($this->dir . '/app');

        Context::activate(new Context());
        self::assertStringStartsWith($this->dir . '/cache/', (string) Includes::path('lib.php', $app));
        self::assertSame(Includes::ALREADY_INCLUDED, Includes::once('lib.php', $app));
    }

    public function testFilesThatAreNotRewrittenAreIncludedOncePerProcess(): void
    {
        file_put_contents($this->dir . '/app/vendor/lib.php', "<?php\n");
        file_put_contents($this->dir . '/outside/lib.php', "<?php\n");
        $app = (string) realpath($this->dir . '/app');

        foreach ([$app . '/vendor/lib.php', (string) realpath($this->dir . '/outside/lib.php')] as $file) {
            Context::activate(new Context());
            self::assertSame($file, Includes::once($file, $app));
            Context::activate(new Context());
            self::assertSame(Includes::ALREADY_INCLUDED, Includes::once($file, $app), 'they may declare functions and classes');
        }
    }

    public function testWhatNamesNoFileIsLeftToPhp(): void
    {
        Context::activate(new Context());
        self::assertSame('missing.php', Includes::once('missing.php', $this->dir . '/app'));
        self::assertSame('missing.php', Includes::once('missing.php', $this->dir . '/app'), 'PHP reports it every time');
        self::assertNull(Includes::once(null, $this->dir . '/app'));
    }
}
